"""Adapters recorded by runs (load by name from the store) and evaluations run in the background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.execution.services import Services, open_services
from orchestrator.store import RunStore
from selfspec.settings import RunConfig
from selfspec.types import AdapterRef
from tests.fakes.openai_server import FakeState
from tests.integration.test_api_support import api_config, fake_generator, running_api, wait_for_status

pytestmark = pytest.mark.integration


class FakeTrainer:
    """Writes an adapter folder instantly (the real trainer has its own tests)."""

    def __init__(self, adapters_dir: Path) -> None:
        self.adapters_dir = adapters_dir
        self.calls: list[tuple[str, int]] = []

    @staticmethod
    def _write(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text("{}")

    async def train_adapter(self, *, dataset: Path, name: str, round: int, run_id: str,
                            init_adapter: Path | None) -> AdapterRef:
        lines = await asyncio.to_thread(lambda: dataset.read_text().count("\n"))
        self.calls.append((name, lines))
        out = self.adapters_dir / name
        await asyncio.to_thread(self._write, out)
        return AdapterRef(name=name, path=str(out), base_model="fake-base", round=round, run_id=run_id)


def fake_trainer_services(trainers: list[FakeTrainer]) -> Callable[[RunConfig], AbstractAsyncContextManager[Services]]:
    """A services factory for running_api: the real services with a FakeTrainer, appended to `trainers`."""

    @asynccontextmanager
    async def services_with_fake_trainer(config: RunConfig) -> AsyncIterator[Services]:
        async with open_services(config) as services:
            trainers.append(FakeTrainer(config.adapters_dir))
            yield replace(services, trainer=trainers[-1])

    return services_with_fake_trainer


def test_two_rounds_with_training_hot_load_and_list_adapters(tmp_path: Path) -> None:
    state = FakeState()
    trainers: list[FakeTrainer] = []
    services_with_fake_trainer = fake_trainer_services(trainers)

    with fake_generator(state) as gen_url:
        config = api_config(tmp_path, gen_url, target=6)
        with running_api(config, services_factory=services_with_fake_trainer) as client:
            body = {"rounds": {"count": 2}, "training": {"enabled": True}}
            run_id = client.post("/v1/runs", json=body).raise_for_status().json()["id"]
            run = wait_for_status(client, run_id, {"completed", "failed"})
            assert run["status"] == "completed", run["reason"]
            assert run["rounds"]["1"]["samples_ok"] == run["rounds"]["2"]["samples_ok"] == 6
            names = [f"{run_id}-r1", f"{run_id}-r2"]
            assert trainers[0].calls == [(names[0], 6), (names[1], 6)]
            assert sorted(state.adapters) == names  # hot-loaded into the generator by the run
            adapters = client.get("/v1/adapters").json()
            assert [(a["name"], a["round"], a["loaded"]) for a in adapters] == [(names[0], 1, True), (names[1], 2, True)]
            samples = client.get(f"/v1/runs/{run_id}/samples", params={"round": 2}).json()["items"]
            assert {s["model"] for s in samples} == {names[0]}  # round 2 answered by the round-1 adapter
            assert client.post(f"/v1/adapters/{names[0]}/unload").status_code == 200
            assert client.post(f"/v1/adapters/{names[0]}/load").status_code == 200  # path from the store


def test_adapter_from_the_store_loads_by_name(tmp_path: Path) -> None:
    state = FakeState()
    with fake_generator(state) as gen_url:
        config = api_config(tmp_path, gen_url)
        adapter_dir = config.adapters_dir / "demo-r1"
        adapter_dir.mkdir(parents=True)
        store = RunStore(config.database_url)
        store.create_run("demo", "demo", {})
        store.record_adapter("demo", 1, "demo-r1", str(adapter_dir), {"base_model": "fake-base"})
        store.record_adapter("demo", 2, "escaped", "/etc", {"base_model": "fake-base"})  # a tampered row
        store.close()
        with running_api(config) as client:
            listed = {a["name"]: a for a in client.get("/v1/adapters").json()}
            assert listed["demo-r1"]["loaded"] is False and listed["demo-r1"]["base_model"] == "fake-base"
            assert client.post("/v1/adapters/demo-r1/load").status_code == 200
            assert state.adapters == {"demo-r1": str(adapter_dir.resolve())}
            assert client.get("/v1/adapters").json()[0]["loaded"] is True
            assert client.post("/v1/adapters/escaped/load").status_code == 400  # store paths are checked too
            assert "escaped" not in state.adapters


def test_evaluation_runs_in_the_background_and_reports(tmp_path: Path) -> None:
    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url)
        with running_api(config) as client:
            bad = client.post("/v1/evaluations", json={"models": ["fake-base"], "tasks": ["../../etc/passwd"]})
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "tasks", 0]
            missing = client.post("/v1/evaluations", json={"models": ["fake-base"], "tasks": ["nosuch"]})
            assert missing.status_code == 422
            assert client.get("/v1/evaluations").json() == []

            created = client.post("/v1/evaluations", json={
                "models": ["fake-base"], "tasks": ["biomedical/pubmed_yes_no", "sports"], "max_items": 3})
            assert created.status_code == 202, created.text
            eval_id = created.json()["id"]
            deadline = time.monotonic() + 120
            while (row := client.get(f"/v1/evaluations/{eval_id}").json())["status"] in ("pending", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert row["status"] == "completed", row["error"]
            tasks = {r["task"] for r in row["results"]}
            assert {"pubmed_yes_no", "rules_yes_no", "macro_average"} <= tasks
            assert row["report_available"]
            plot = client.get(f"/v1/evaluations/{eval_id}/plot")
            assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
            assert client.get("/v1/evaluations/nope").status_code == 404
            failing = client.post("/v1/evaluations", json={"models": ["not-served"], "tasks": ["sports"]}).json()
            deadline = time.monotonic() + 60
            while (row := client.get(f"/v1/evaluations/{failing['id']}").json())["status"] in ("pending", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert row["status"] == "failed" and "not served" in row["error"]
