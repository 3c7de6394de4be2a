"""Evaluations requested over the API: kept in the store (its `evaluations` table), run as background tasks.

Task names resolve under the shipped task dir (`evaluation/tasks`) or `<data_dir>/eval-tasks`, never
to a path a request supplies. Output goes to `<data_dir>/evaluations/<id>`; `evaluate` appends
predictions as they arrive, so an evaluation interrupted by a restart is started again and resumes
(evaluations are jobs: selfspec/jobs.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from orchestrator.execution.loop_thread import LoopThread
from orchestrator.store import EvaluationRecord, RunStore
from selfspec.clients.protocols import Generator
from selfspec.errors import EvaluationNotFound, RequestFieldError, SelfSpecError
from selfspec.jobs import JobTasks
from selfspec.settings import REPO_ROOT, RunConfig
from selfspec.types import NAME_PATTERN

log = logging.getLogger(__name__)

_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def task_roots(config: RunConfig) -> tuple[Path, ...]:
    return (REPO_ROOT / "evaluation" / "tasks", config.data_dir / "eval-tasks")


def resolve_tasks(names: list[str], config: RunConfig) -> list[Path]:
    """`biomedical` (a folder of task files) or `biomedical/pubmed_yes_no` (one file), under the task roots."""
    files: list[Path] = []
    errors: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        if not _TASK_NAME.match(name) or ".." in name:
            errors.append({"loc": ["body", "tasks", i], "msg": f"invalid task name {name!r}", "type": "task_name"})
            continue
        for root in task_roots(config):
            folder, file = root / name, root / f"{name}.jsonl"
            if folder.is_dir():
                files.extend(sorted(p for p in folder.glob("*.jsonl") if p.is_file()))
                break
            if file.is_file():
                files.append(file)
                break
        else:
            errors.append({"loc": ["body", "tasks", i], "msg": f"no task or task folder named {name!r}",
                           "type": "task_missing"})
    if errors:
        raise RequestFieldError(errors)
    return files


class EvaluationSpec(BaseModel):
    """What an evaluation job runs: the API's request body, kept in the store and read back on resume."""

    models: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        min_length=1, max_length=16, description="served model names (base, adapters), base first")
    tasks: list[str] = Field(min_length=1, max_length=64,
                             description="task folders ('biomedical') or files ('biomedical/pubmed_yes_no')")
    shots: list[Annotated[int, Field(ge=0, le=64)]] = Field([0], min_length=1, max_length=8)
    max_items: int = Field(0, ge=0, le=10_000_000, description="first N items per task; 0 = all")
    concurrency: int = Field(8, ge=1, le=64)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    run_id: str | None = Field(None, pattern=NAME_PATTERN)
    scoring: list[Literal["generate", "choice", "constrained"]] = Field(
        ["generate"], min_length=1, max_length=3, description="scoring modes (evaluation/README.md)")


class EvaluationJobs:
    """Evaluation tasks run on the loop thread (with the generator client); the table is read from anywhere."""

    def __init__(self, *, store: RunStore, generator: Generator, config: RunConfig,
                 loop_thread: LoopThread) -> None:
        self.store, self.generator, self.config, self.loop_thread = store, generator, config, loop_thread
        self._tasks = JobTasks("evaluation")
        self.progress: dict[str, tuple[int, int]] = {}

    def out_dir(self, eval_id: str) -> Path:
        return self.config.data_dir / "evaluations" / eval_id

    def get(self, eval_id: str) -> EvaluationRecord:
        record = self.store.get_evaluation(eval_id)
        if record is None:
            raise EvaluationNotFound(f"evaluation {eval_id!r} not found")
        return record

    # ---- lifecycle ----

    async def submit(self, request: EvaluationSpec) -> str:
        return await self.loop_thread.call(self._submit(request))

    async def resume_interrupted(self) -> None:
        await self.loop_thread.call(self._resume_interrupted())

    async def aclose(self) -> None:
        await self.loop_thread.call(self._aclose())

    async def _submit(self, request: EvaluationSpec) -> str:
        if request.run_id is not None:
            self.store.get_run(request.run_id)  # 404 for an unknown run
        resolve_tasks(request.tasks, self.config)  # 422 before anything is written
        eval_id = f"eval-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex}"
        self.store.create_evaluation(eval_id, run_id=request.run_id, request=request.model_dump(mode="json"))
        self._start(eval_id, request)
        return eval_id

    def _start(self, eval_id: str, request: EvaluationSpec) -> None:
        self._tasks.start(eval_id, self._execute(eval_id, request))

    async def _execute(self, eval_id: str, request: EvaluationSpec) -> None:
        from evaluation.report import write_report
        from evaluation.runner import evaluate

        out = self.out_dir(eval_id)
        self.store.set_evaluation(eval_id, status="running")
        try:
            files = resolve_tasks(request.tasks, self.config)
            results = await evaluate(
                self.generator, models=request.models, task_files=files, shots=request.shots, out_dir=out,
                max_items=request.max_items or None, concurrency=request.concurrency, seed=request.seed,
                scoring=request.scoring,
                on_progress=lambda done, total: self.progress.__setitem__(eval_id, (done, total)),
            )
            report = await asyncio.to_thread(write_report, results, out)
        except (SelfSpecError, ValueError) as err:
            log.warning("evaluation %s failed: %s", eval_id, err)
            self.store.set_evaluation(eval_id, status="failed", error=str(err)[:2000])
            return
        except Exception as err:  # a boundary that records: the job must not stay `running` forever
            log.exception("evaluation %s failed unexpectedly", eval_id)
            self.store.set_evaluation(eval_id, status="failed", error=f"internal error: {type(err).__name__}: {err}"[:2000])
            return
        self.store.set_evaluation(eval_id, status="completed", results=[r.model_dump(mode="json") for r in results],
                                  report_path=str(report))

    async def _resume_interrupted(self) -> None:
        requests = {record.id: record.request for record in self.store.list_evaluations()
                    if record.status in ("pending", "running")}
        self._tasks.resume(
            requests, start=lambda eval_id: self._start(eval_id, EvaluationSpec.model_validate(requests[eval_id])),
            failed=lambda eval_id, err: self.store.set_evaluation(eval_id, status="failed",
                                                                  error=f"resume failed: {err}"[:2000]))

    async def _aclose(self) -> None:
        await self._tasks.stop(timeout_s=10.0)
