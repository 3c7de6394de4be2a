"""Trainer service + HTTP client over an in-process app and a fake runner (no subprocess, no torch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from selfspec.types import AdapterRef, ChatMessage, SFTRecord
from trainer.client import HttpTrainerClient
from trainer.config import TrainConfig
from trainer.jobs import JobNotFound, TrainingJobFailed
from trainer.protocol import JobStatus
from trainer.service import create_app


class FakeRunner:
    """Finishes every job at once; job 'bad' fails."""

    def __init__(self) -> None:
        self.configs: dict[str, TrainConfig] = {}

    async def submit(self, config: TrainConfig) -> str:
        job_id = f"{len(self.configs):032x}"
        self.configs[job_id] = config
        return job_id

    async def status(self, job_id: str) -> JobStatus:
        config = self.configs.get(job_id)
        if config is None:
            raise JobNotFound(f"no training job {job_id!r}")
        if config.run_id == "fail":
            return JobStatus(id=job_id, state="failed", error="boom")
        adapter = AdapterRef(name=config.name, path=str(config.output_dir), base_model=config.base_model)
        return JobStatus(id=job_id, state="succeeded", adapter=adapter)

    async def wait(self, job_id: str, poll_s: float = 2.0) -> AdapterRef:
        raise NotImplementedError


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, adapters = tmp_path / "data", tmp_path / "adapters"
    data.mkdir()
    adapters.mkdir()
    text = "Name the organ."
    record = SFTRecord(id="r0", run_id="r", round=1, source_sample_id="s0", instruction=text, output="Liver.",
                       messages=(ChatMessage(role="user", content=text),))
    (data / "d.jsonl").write_text(record.model_dump_json() + "\n", encoding="utf-8")
    (data / "bad.jsonl").write_text(record.model_dump_json() + "\n{oops\n", encoding="utf-8")
    return data, adapters


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
async def client(dirs: tuple[Path, Path], runner: FakeRunner) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(data_dir=dirs[0], adapters_dir=dirs[1], runner=runner)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        yield http


def _body(**overrides: object) -> dict[str, object]:
    return {"base_model": "smollm2-135m", "dataset": "d.jsonl", "output_dir": "bio-r1", **overrides}


async def test_trainer_service_accepts_job_with_paths_inside_dirs(
    client: httpx.AsyncClient, runner: FakeRunner, dirs: tuple[Path, Path]
) -> None:
    response = await client.post("/jobs", json=_body(round=2, max_steps=3))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    config = runner.configs[job_id]
    assert config.dataset == (dirs[0] / "d.jsonl").resolve()
    assert config.output_dir == (dirs[1] / "bio-r1").resolve()
    assert (config.round, config.max_steps, config.name) == (2, 3, "bio-r1")
    status = (await client.get(f"/jobs/{job_id}")).json()
    assert status["state"] == "succeeded" and status["adapter"]["name"] == "bio-r1"
    assert (await client.get("/health")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"dataset": "../outside.jsonl"}, "dataset"),
        ({"output_dir": "/etc/adapters/x"}, "outside the adapters dir"),
        ({"adapter_name": "a/b"}, "invalid adapter name"),
        ({"init_adapter": "../../elsewhere"}, "outside the adapters dir"),
        ({"dataset": "bad.jsonl"}, "bad.jsonl:2"),
        ({"dataset": "missing.jsonl"}, "file not found"),
        ({"effective_batch": 30}, "multiple of micro_batch"),
    ],
)
async def test_trainer_service_rejects_bad_jobs_before_queueing(
    client: httpx.AsyncClient, runner: FakeRunner, overrides: dict[str, object], needle: str
) -> None:
    response = await client.post("/jobs", json=_body(**overrides))
    assert response.status_code == 422
    assert needle in response.text
    assert runner.configs == {}


async def test_trainer_service_rejects_unknown_fields(client: httpx.AsyncClient, runner: FakeRunner) -> None:
    response = await client.post("/jobs", json=_body(lora_rank=8))
    assert response.status_code == 422 and "lora_rank" in response.text
    assert runner.configs == {}


async def test_trainer_service_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/" + "0" * 32)).status_code == 404


async def test_trainer_http_client_satisfies_runner_protocol(
    dirs: tuple[Path, Path], runner: FakeRunner
) -> None:
    app = create_app(data_dir=dirs[0], adapters_dir=dirs[1], runner=runner)
    async with HttpTrainerClient("http://localhost", transport=httpx.ASGITransport(app=app)) as remote:
        assert await remote.health()
        config = TrainConfig(base_model="smollm2-135m", dataset=dirs[0] / "d.jsonl", output_dir=dirs[1] / "r1")
        job_id = await remote.submit(config)
        adapter = await remote.wait(job_id, poll_s=0.01)
        assert adapter.name == "r1"
        failing = TrainConfig(base_model="smollm2-135m", dataset=dirs[0] / "d.jsonl",
                              output_dir=dirs[1] / "r2", run_id="fail")
        with pytest.raises(TrainingJobFailed, match="boom"):
            await remote.wait(await remote.submit(failing), poll_s=0.01)
        with pytest.raises(JobNotFound):
            await remote.status("f" * 32)


@pytest.mark.parametrize("output_dir", [".", "", "{adapters}", "a/b", "../adapters", ".bio-r1.work"])
async def test_trainer_service_output_dir_is_one_adapter_folder_under_the_root(
    client: httpx.AsyncClient, runner: FakeRunner, dirs: tuple[Path, Path], output_dir: str
) -> None:
    """Before: `output_dir` = the adapters root was accepted, and with overwrite the job renamed and
    deleted every adapter in it."""
    body = _body(output_dir=output_dir.format(adapters=dirs[1]), overwrite=True)
    response = await client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert "output_dir" in response.text or "adapter name" in response.text
    assert runner.configs == {}


async def test_trainer_service_refuses_overwrite_of_an_adapter_it_did_not_create(
    client: httpx.AsyncClient, runner: FakeRunner, dirs: tuple[Path, Path]
) -> None:
    (dirs[1] / "someone-elses").mkdir()
    response = await client.post("/jobs", json=_body(output_dir="someone-elses", overwrite=True))
    assert response.status_code == 409 and "overwrite" in response.text
    assert runner.configs == {}
    # nothing there yet: accepted, and queued without overwrite, so an adapter appearing meanwhile is kept
    response = await client.post("/jobs", json=_body(output_dir="fresh", overwrite=True))
    assert response.status_code == 202
    assert runner.configs[response.json()["id"]].overwrite is False


def test_overwrite_never_replaces_a_folder_that_is_not_an_adapter(tmp_path: Path) -> None:
    from selfspec.errors import AdapterConflict
    from trainer.artifacts import existing_adapter

    (tmp_path / "other-adapter").mkdir()  # the adapters root, say: not itself an adapter
    config = TrainConfig(base_model="smollm2-135m", dataset=tmp_path / "d.jsonl", output_dir=tmp_path,
                         overwrite=True)
    with pytest.raises(AdapterConflict, match="no complete selfspec adapter"):
        existing_adapter(config, "0" * 64)
    assert (tmp_path / "other-adapter").is_dir()
