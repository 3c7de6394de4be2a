"""execute_and_evaluate, the one run path of `selfspec run`, sweeps and run workers: on the fake generator,
the embedded BM25 and a fake trainer, a run is executed, then base and its adapter evaluated once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.execution import RunOutcome, build_driver, execute_and_evaluate
from orchestrator.services import open_services
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


async def execute(config: RunConfig, *, evaluate: bool) -> tuple[RunOutcome, list[str]]:
    seen: list[str] = []
    async with open_services(config) as services:
        services = replace(services, trainer=FakeTrainer(config.adapters_dir))
        driver = build_driver(config, services)
        run_id = driver.create()

        async def on_executed(summary: object) -> None:
            seen.append(services.store.get_run(run_id).status)  # the run is recorded before evaluation

        outcome = await execute_and_evaluate(driver, run_id, services=services, evaluate=evaluate,
                                             on_executed=on_executed)
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
