"""A run over open services, executed then evaluated: the one path of `selfspec run`, sweeps and run workers.

    build_driver          the run's driver over open services (its own training knobs, the services' job runner)
    execute_and_evaluate  execute a run (new or resumed); then base and its adapters on the `eval.tasks`
    evaluate_models       models on the config's task files in one pass; sweeps evaluate every variant's
                          models together through it

Opening the services stays with the caller: `selfspec run` starts them for one run, a sweep once for all
its variants, a run worker connects to the API's generator and index.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.execution.driver import RunDriver, RunSummary
from orchestrator.execution.dry_run import estimate_vs_actual
from orchestrator.execution.runner import ProgressSink
from orchestrator.execution.services import LocalAdapterTrainer, Services
from selfspec.cards import write_adapter_evaluation
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig
from selfspec.types import EvalResult, SeedTask

if TYPE_CHECKING:
    from evaluation.contamination import ContaminationReport

# A progress display for one stretch of work (execution, then evaluation): rich bars in the CLI, none elsewhere.
ProgressFactory = Callable[[], AbstractContextManager[ProgressSink | None]]


def no_progress() -> AbstractContextManager[ProgressSink | None]:
    return nullcontext(None)


@dataclass
class RunEvaluation:
    """Base vs the run's adapters on the configured tasks: results, report.md (+ report.png) and the
    contamination check of each round's SFT data against the evaluation items."""

    results: list[EvalResult]
    report: Path
    contamination: list[ContaminationReport]


@dataclass
class RunOutcome:
    summary: RunSummary
    evaluation: RunEvaluation | None = None  # None: not asked, awaiting review, no eval tasks or no adapter
    # (phase, estimated s, actual s) rows when a dry run of this config left an estimate
    estimate: list[dict[str, Any]] | None = None


def build_driver(config: RunConfig, services: Services, *, seeds: list[SeedTask] | None = None) -> RunDriver:
    """A driver for one run over open services (seeds: the config's file unless given). Training knobs are
    the run's; the job runner (and its jobs dir, or the trainer service) is the services'."""
    trainer = services.trainer
    if isinstance(trainer, LocalAdapterTrainer):
        trainer = LocalAdapterTrainer(config, runner=trainer.runner)
    return RunDriver(config=config, store=services.store, generator=services.generator,
                     retriever=services.retriever, trainer=trainer,
                     seeds=seeds if seeds is not None else load_seeds(config.resolve(config.run.seeds)),
                     judge=services.judge)


def eval_task_files(config: RunConfig) -> list[Path]:
    from evaluation.schema import find_task_files

    return find_task_files([config.resolve(Path(t)) for t in config.eval.tasks])


async def evaluate_models(services: Services, config: RunConfig, *, models: list[str], out_dir: Path,
                          progress: ProgressSink | None = None) -> list[EvalResult]:
    """`models` on the config's `eval.tasks` (shots, scoring, items per task), answers saved under `out_dir`
    (a second call resumes them)."""
    from evaluation.runner import evaluate

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update("evaluation", done=done, total=total)

    return await evaluate(
        services.generator, models=models, task_files=eval_task_files(config), shots=list(config.eval.shots),
        out_dir=out_dir, max_items=config.eval.max_items_per_task or None,
        concurrency=config.services.generator_in_flight, scoring=list(config.eval.scoring), on_progress=on_progress,
    )


async def execute_and_evaluate(
    driver: RunDriver,
    run_id: str,
    *,
    services: Services,
    evaluate: bool = True,
    progress: ProgressFactory = no_progress,
    on_executed: Callable[[RunSummary], Awaitable[None]] | None = None,
    services_up_s: float | None = None,
) -> RunOutcome:
    """Execute the run (the driver records its status), then, with `evaluate`, base and every adapter of the
    run on `eval.tasks` into `<run dir>/eval`; each adapter's card gets its rows. `on_executed` sees the
    summary in between (the CLI prints it there). A run that pauses for review is not evaluated.
    `services_up_s`: how long the caller took to open the services, reported as the phase "services up"."""
    with progress() as sink:
        driver.progress = sink
        summary = await driver.execute(run_id)
    if services_up_s is not None:
        summary.phase_seconds = {"services up": services_up_s, **summary.phase_seconds}
    if on_executed is not None:
        await on_executed(summary)
    config = driver.config
    if not (evaluate and summary.awaiting_review is None and config.eval.tasks and summary.adapters):
        return RunOutcome(summary, estimate=_record_estimate(services, config, summary))
    from evaluation.contamination import check_contamination, dataset_texts
    from evaluation.report import write_report
    from evaluation.runner import load_tasks

    out = driver.run_dir(run_id) / "eval"
    models = [config.generation.model, *(a.name for a in summary.adapters.values())]
    started = time.monotonic()
    with progress() as sink:
        results = await evaluate_models(services, config, models=models, out_dir=out, progress=sink)
    summary.phase_seconds["evaluation"] = time.monotonic() - started
    items = [item for task in load_tasks(eval_task_files(config), config.eval.max_items_per_task or None)
             for item in task.items]
    contamination = [check_contamination(dataset_texts(path), items, dataset=f"round {rnd} SFT data")
                     for rnd, path in summary.datasets.items()]
    report = write_report(results, out, contamination=contamination)
    for adapter in summary.adapters.values():
        write_adapter_evaluation(Path(adapter.path), results)
    return RunOutcome(summary, RunEvaluation(results, report, contamination),
                      estimate=_record_estimate(services, config, summary))


def _record_estimate(services: Services, config: RunConfig, summary: RunSummary) -> list[dict[str, Any]] | None:
    """A finished run of a config that was dry-run first gets an `estimate` event: the estimate next to the
    actual seconds per phase, for the CLI and the run page alike."""
    if summary.awaiting_review is not None:
        return None
    rows = estimate_vs_actual(config, summary.phase_seconds)
    if rows is not None:
        services.store.add_event(summary.run_id, "estimate", {"phases": rows})
    return rows
