"""Evaluation jobs of the API end in a final state whatever goes wrong inside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.protocol import EvaluationRequest
from orchestrator.execution.evaluation_jobs import EvaluationJobs
from orchestrator.store import RunStore
from selfspec.settings import RunConfig


async def test_evaluation_job_with_an_unexpected_error_ends_failed_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: only SelfSpecError/ValueError were caught; anything else left the job `running` for good."""
    import evaluation.runner

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("label")

    monkeypatch.setattr(evaluation.runner, "evaluate", broken)
    (tmp_path / "eval-tasks").mkdir()
    (tmp_path / "eval-tasks" / "t.jsonl").write_text("{}\n", encoding="utf-8")
    config = RunConfig(storage={"data_dir": str(tmp_path)})
    store = RunStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    jobs = EvaluationJobs(store=store, generator=object(), config=config, loop_thread=object())  # type: ignore[arg-type]
    try:
        eval_id = await jobs._submit(EvaluationRequest(models=["base"], tasks=["t"]))
        assert await jobs._tasks.join(timeout_s=10)
        record = jobs.get(eval_id)
        assert record.status == "failed"
        assert "KeyError" in record.error and "label" in record.error
    finally:
        store.close()
