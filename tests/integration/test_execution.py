"""execute_and_evaluate, the one run path of `selfspec run`, sweeps and run workers: on the fake generator,
the embedded BM25 and a fake trainer, a run is executed, then base and its adapter evaluated once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.execution.dry_run import estimate_path
from orchestrator.execution.evaluated_run import RunOutcome, build_driver, execute_and_evaluate
from orchestrator.execution.services import open_services
from orchestrator.store import RunStore
from selfspec.settings import RunConfig, load_config
from tests.integration.test_api_adapters_evals import FakeTrainer
from tests.integration.test_api_support import REPO, config_data, fake_generator

pytestmark = pytest.mark.integration


def eval_config(tmp_path: Path, generator_url: str) -> RunConfig:
    data = config_data(tmp_path, generator_url, target=4)
    data["training"] = {"enabled": True}
    data["eval"] = {"tasks": [str(REPO / "evaluation/tasks/biomedical")], "shots": [0], "max_items_per_task": 2}
    overrides = {f"{section}.{key}": value for section, fields in data.items() for key, value in fields.items()}
    return load_config(None, overrides)


async def execute(config: RunConfig, *, evaluate: bool,
                  services_up_s: float | None = None) -> tuple[RunOutcome, list[str]]:
    seen: list[str] = []
    async with open_services(config) as services:
        services = replace(services, trainer=FakeTrainer(config.adapters_dir))
        driver = build_driver(config, services)
        run_id = driver.create()

        async def on_executed(summary: object) -> None:
            seen.append(services.store.get_run(run_id).status)  # the run is recorded before evaluation

        outcome = await execute_and_evaluate(driver, run_id, services=services, evaluate=evaluate,
                                             on_executed=on_executed, services_up_s=services_up_s)
    return outcome, seen


def test_execute_and_evaluate_runs_then_evaluates_base_and_adapters(tmp_path: Path) -> None:
    with fake_generator() as url:
        config = eval_config(tmp_path, url)
        outcome, seen = asyncio.run(execute(config, evaluate=True))
    assert seen == ["completed"]
    summary, evaluation = outcome.summary, outcome.evaluation
    adapter = summary.adapters[1]
    assert evaluation is not None and "evaluation" in summary.phase_seconds
    assert {r.model for r in evaluation.results} == {"fake-base", adapter.name}
    assert evaluation.report == tmp_path / "data/runs" / summary.run_id / "eval/report.md"
    assert adapter.name in evaluation.report.read_text()
    assert [c.dataset for c in evaluation.contamination] == ["round 1 SFT data"]


def test_execute_without_evaluation_leaves_the_models_alone(tmp_path: Path) -> None:
    with fake_generator() as url:
        config = eval_config(tmp_path, url)
        outcome, _ = asyncio.run(execute(config, evaluate=False))
    assert outcome.evaluation is None and outcome.summary.adapters
    assert "evaluation" not in outcome.summary.phase_seconds
    assert not (tmp_path / "data/runs" / outcome.summary.run_id / "eval").exists()


def test_a_dry_run_config_records_its_estimate_next_to_the_actual_seconds(tmp_path: Path) -> None:
    with fake_generator() as url:
        config = eval_config(tmp_path, url)
        outcome, _ = asyncio.run(execute(config, evaluate=False))
        assert outcome.estimate is None  # no dry run of this config: nothing to compare
        path = estimate_path(config)
        path.parent.mkdir(parents=True)
        stages = [{"stage": "services up", "seconds": 3.0}, {"stage": "round1:instructions", "seconds": 4.0},
                  {"stage": "round1:responses", "seconds": 5.0}, {"stage": "round1:training", "seconds": 7.0}]
        path.write_text(json.dumps({"stages": stages}))
        outcome, _ = asyncio.run(execute(config, evaluate=False, services_up_s=1.5))
    summary = outcome.summary
    rows = {row["phase"]: row for row in outcome.estimate or []}
    assert rows["services up"] == {"phase": "services up", "estimated_s": 3.0, "actual_s": 1.5}
    assert rows["round1:synthesis"]["estimated_s"] == 9.0  # instruction + response stages of the round
    assert rows["round1:synthesis"]["actual_s"] == round(summary.phase_seconds["round1:synthesis"], 1)
    store = RunStore(config.database_url)
    events = [e for e in store.events_after(summary.run_id) if e["type"] == "estimate"]
    store.close()
    assert [e["data"]["phases"] for e in events] == [outcome.estimate]  # the run page reads this event
