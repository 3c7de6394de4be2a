"""A real sweep on the fake generator and the embedded BM25: runs in the store, shared instructions,
evaluation of every model, a report, and a second invocation that resumes instead of starting over."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console

from orchestrator.store import RunStore
from orchestrator.sweep import load_sweep, run_sweep
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
        runs = {r["id"]: r for r in store.list_runs()}
        assert set(runs) == set(state.values()) and all(r["status"] == "completed" for r in runs.values())

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
        assert {r["id"] for r in store.list_runs()} == set(runs)
        assert len(store.instructions(first, 1)) == TARGET
        store.close()
