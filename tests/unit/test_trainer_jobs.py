"""LocalSubprocessRunner state machine with a fake trainer executable, and the CLI command's error path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from selfspec.types import ChatMessage, SFTRecord
from trainer.commands import train_command
from trainer.config import TrainConfig
from trainer.jobs import JobNotFound, LocalSubprocessRunner, TrainingJobFailed

FAKE_TRAINER = textwrap.dedent(
    """\
    #!{python}
    # Stands in for `python -m trainer.train`: honours --config-json / --result-file / --progress-file.
    import json, sys, time
    args = dict(zip(sys.argv[3::2], sys.argv[4::2]))
    config = json.load(open(args["--config-json"]))
    print("fake trainer for", config["output_dir"], flush=True)
    time.sleep(float(config["run_id"].split(":")[1]) if ":" in config["run_id"] else 0)
    if config["run_id"].startswith("crash"):
        print("Traceback: boom", flush=True)
        sys.exit(3)
    json.dump({{"step": 2, "total_steps": 2}}, open(args["--progress-file"], "w"))
    adapter = {{"name": config["output_dir"].rsplit("/", 1)[-1], "path": config["output_dir"],
               "base_model": config["base_model"], "steps": 2}}
    json.dump({{"state": "succeeded", "adapter": adapter}}, open(args["--result-file"], "w"))
    """
)


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_TRAINER.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def _config(tmp_path: Path, name: str, run_id: str = "") -> TrainConfig:
    return TrainConfig(base_model="smollm2-135m", dataset=tmp_path / "d.jsonl",
                       output_dir=tmp_path / "adapters" / name, run_id=run_id)


async def test_trainer_jobs_runner_reports_success_and_crash(tmp_path: Path, fake_python: str) -> None:
    runner = LocalSubprocessRunner(tmp_path / "jobs", python=fake_python, max_concurrent=1)
    try:
        ok = await runner.submit(_config(tmp_path, "good", run_id="ok:0.3"))
        crash = await runner.submit(_config(tmp_path, "bad", run_id="crash"))
        assert (await runner.status(crash)).state == "queued"  # one slot: waits for the first job
        assert await runner.submit(_config(tmp_path, "good", run_id="ok:0.3")) == ok  # same output dir
        adapter = await runner.wait(ok, poll_s=0.05, timeout_s=30)
        assert (adapter.name, adapter.steps) == ("good", 2)
        status = await runner.status(ok)
        assert status.progress is not None and status.progress.step == 2
        with pytest.raises(TrainingJobFailed, match="exited with code 3.*boom"):
            await runner.wait(crash, poll_s=0.05, timeout_s=30)
        assert "fake trainer for" in runner.log_path(crash).read_text(encoding="utf-8")
    finally:
        await runner.aclose()
    with pytest.raises(JobNotFound):
        await runner.status("../../etc")


async def test_trainer_jobs_status_survives_a_new_runner(tmp_path: Path, fake_python: str) -> None:
    first = LocalSubprocessRunner(tmp_path / "jobs", python=fake_python)
    job_id = await first.submit(_config(tmp_path, "a1"))
    await first.wait(job_id, poll_s=0.05, timeout_s=30)
    await first.aclose()
    again = LocalSubprocessRunner(tmp_path / "jobs", python=fake_python)
    status = await again.status(job_id)
    assert status.state == "succeeded" and status.adapter is not None and status.adapter.name == "a1"


def test_trainer_commands_bad_dataset_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    text = "Name the organ."
    record = SFTRecord(id="r0", run_id="r", round=1, source_sample_id="s", instruction=text, output="Liver.",
                       messages=(ChatMessage(role="user", content=text),))
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(record.model_dump_json() + "\n" + json.dumps({"id": "r1"}) + "\n", encoding="utf-8")
    app = typer.Typer()
    app.command()(train_command)
    out = tmp_path / "adapters" / "a1"
    result = CliRunner().invoke(app, ["--dataset", str(dataset), "--base", "smollm2-135m", "--out", str(out)])
    assert result.exit_code == 2
    assert "d.jsonl:2" in result.output
    assert not out.parent.exists()
    bad = CliRunner().invoke(app, ["--dataset", str(dataset), "--base", "x", "--out", str(out),
                                   "--quantization", "int8"])
    assert bad.exit_code == 2 and "quantization" in bad.output


def test_trainer_light_modules_do_not_import_torch() -> None:
    code = ("import sys, trainer.commands, trainer.jobs, trainer.client, trainer.service, trainer.config; "
            "sys.exit(int('torch' in sys.modules or 'trl' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_trainer_jobs_one_training_per_host_across_runners(tmp_path: Path, fake_python: str) -> None:
    """Two run workers (each with a runner of its own over the shared data dir) never train at once."""
    first = LocalSubprocessRunner(tmp_path / "data" / "jobs", python=fake_python)
    second = LocalSubprocessRunner(tmp_path / "data" / "jobs", python=fake_python)
    try:
        a = await first.submit(_config(tmp_path, "a", run_id="ok:1.5"))
        for _ in range(300):
            if (await first.status(a)).state == "running":
                break
            await asyncio.sleep(0.02)
        b = await second.submit(_config(tmp_path, "b", run_id="ok:0"))
        seen: list[tuple[str, str]] = []
        while (state := (await second.status(b)).state) in ("queued", "running"):
            seen.append(((await first.status(a)).state, state))
            await asyncio.sleep(0.05)
        assert state == "succeeded", (await second.status(b)).error
        assert ("running", "queued") in seen  # the second waited while the first trained...
        assert all(other != "running" for other, mine in seen if mine == "running")  # ...and never overlapped it
        assert (await first.status(a)).state == "succeeded"
    finally:
        await first.aclose()
        await second.aclose()


async def test_trainer_jobs_stopped_by_the_runner_resume_in_their_own_folder(tmp_path: Path, fake_python: str) -> None:
    """Before: stopping the runner recorded the trainer's SIGTERM as the job's exit (`failed`), and no runner
    ever started the job again; a crashed job stays failed."""
    first = LocalSubprocessRunner(tmp_path / "jobs", python=fake_python, grace_s=5)
    crashed = await first.submit(_config(tmp_path, "bad", run_id="crash"))
    with pytest.raises(TrainingJobFailed):
        await first.wait(crashed, poll_s=0.05, timeout_s=30)
    job = await first.submit(_config(tmp_path, "a", run_id="ok:1.0"))
    for _ in range(300):
        if (await first.status(job)).state == "running":
            break
        await asyncio.sleep(0.02)
    await first.aclose()
    assert not (tmp_path / "jobs" / job / "exit.json").exists()

    again = LocalSubprocessRunner(tmp_path / "jobs", python=fake_python)
    try:
        assert again.interrupted() == [job]
        assert again.resume_interrupted() == [job]
        assert again.interrupted() == []  # its task drives it now
        assert await again.submit(_config(tmp_path, "a", run_id="ok:1.0")) == job  # the same output dir
        adapter = await again.wait(job, poll_s=0.05, timeout_s=30)
        assert adapter.name == "a"
        assert (await again.status(crashed)).state == "failed"
    finally:
        await again.aclose()
    assert LocalSubprocessRunner(tmp_path / "jobs", python=fake_python).interrupted() == []
