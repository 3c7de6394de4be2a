"""A real sweep on the fake generator and the embedded BM25: runs in the store, shared instructions,
evaluation of every model, a report, and a second invocation that resumes instead of starting over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from orchestrator.execution.sweep import load_sweep, run_sweep
from orchestrator.store import RunStore, samples
from selfspec.processes import ManagedServer, free_port
from tests.integration.test_api_support import REPO, config_data, config_toml, fake_generator

TARGET = 6


def sweep_file(tmp_path: Path, generator_url: str) -> Path:
    data = config_data(tmp_path, generator_url, target=TARGET)
    data["eval"] = {"tasks": [str(REPO / "evaluation/tasks/biomedical")], "shots": [0], "max_items_per_task": 2}
    (tmp_path / "base.toml").write_text(config_toml(data))
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nname = "k"\nbase = "base.toml"\n[grid]\n"retrieval.k" = [0, 2]\n')
    return path


def test_sweep_shares_instructions_evaluates_reports_and_resumes(tmp_path: Path) -> None:
    with fake_generator() as url:
        path = sweep_file(tmp_path, url)
        sweep = load_sweep(path)
        report = asyncio.run(run_sweep(sweep, Console(file=None, quiet=True)))

        store = RunStore(f"sqlite:///{tmp_path / 'data/selfspec.db'}")
        state = json.loads((tmp_path / "data/sweeps/k/state.json").read_text())["runs"]
        assert set(state) == {"k=0", "k=2"}
        runs = {r.id: r for r in store.list_runs()}
        assert set(runs) == set(state.values()) and all(r.status == "completed" for r in runs.values())

        first, second = state["k=0"], state["k=2"]
        own = store.instructions(first, 1)
        reused = store.instructions(second, 1)
        assert len(own) == TARGET
        assert [(i.text, i.input) for i in reused] == [(i.text, i.input) for i in own]
        assert store.stats(second)["rounds"]["1"]["prompts"] == 0  # no instruction prompt was sent for k=2
        samples0, samples2 = list(store.iter_samples(first, 1)), list(store.iter_samples(second, 1))
        assert len(samples0) == len(samples2) == TARGET
        assert all(not s.retrieved for s in samples0) and all(len(s.retrieved) == 2 for s in samples2)

        text = report.read_text()
        assert "| k=0 |" in text and "| k=2 |" in text and "instructions of k=0" in text
        assert "top-5" not in text  # the grid has no k=5/k=1 pair: no claim about it is made
        assert (report.parent / "report.png").stat().st_size > 0
        assert (report.parent / "eval/results.json").is_file()

        # The same command again: nothing new is created, the report is rewritten.
        asyncio.run(run_sweep(load_sweep(path), Console(file=None, quiet=True)))
        assert {r.id for r in store.list_runs()} == set(runs)
        assert len(store.instructions(first, 1)) == TARGET
        store.close()


def test_killed_sweep_resumes_its_runs_without_loss_or_duplicates(tmp_path: Path) -> None:
    """kill -9 a real `selfspec sweep` while its second variant is answering, run it again."""
    target = 40
    port = free_port()
    fake = ManagedServer([sys.executable, "-m", "tests.fakes.serve", "--port", str(port), "--latency", "0.03"],
                         url=f"http://127.0.0.1:{port}", log_path=tmp_path / "fake.log",
                         env={**os.environ, "PYTHONPATH": str(REPO)}, startup_timeout_s=60)
    with fake:
        path = sweep_file(tmp_path, fake.url)
        path.write_text(path.read_text().replace(
            'base = "base.toml"\n', f'base = "base.toml"\n[sweep.overrides]\n"generation.target_per_round" = {target}\n'))
        command = [sys.executable, "-m", "selfspec.cli", "sweep", "-c", str(path)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = tmp_path / "sweep.log"  # not a pipe: one left open after the kill is an unclosed file
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        state_path = tmp_path / "data/sweeps/k/state.json"
        store = RunStore(f"sqlite:///{tmp_path / 'data/selfspec.db'}")
        deadline = time.monotonic() + 120
        while True:  # wait until the second variant has committed a few samples
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "sweep made no progress"
            runs = json.loads(state_path.read_text())["runs"] if state_path.is_file() else {}
            if "k=2" in runs and 3 <= sum(1 for _ in store.iter_samples(runs["k=2"], 1)) < target:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = json.loads(state_path.read_text())["runs"]
        assert store.get_run(before["k=2"]).status != "completed"

        finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert json.loads(state_path.read_text())["runs"] == before  # the same runs, resumed
        assert {r.id for r in store.list_runs()} == set(before.values())
        with store.engine.connect() as conn:
            for run_id in before.values():
                rows = conn.execute(select(samples.c.instruction_id).where(samples.c.run_id == run_id)).scalars().all()
                assert len(rows) == len(set(rows)) == target
                assert store.get_run(run_id).status == "completed"
            assert conn.execute(select(func.count()).select_from(samples)).scalar() == 2 * target
        assert (tmp_path / "data/sweeps/k/report.md").is_file()
        store.close()
