"""Run evaluation tasks against served models (base and adapters) and score them.

    results = await evaluate(generator, models=["base", "r1", "r2"], task_files=[...], shots=[0, 5],
                             out_dir=Path("runs/x/eval"))

Writes `out_dir/predictions/<model>/<task>.<k>shot.jsonl` (one line per answered item, appended as
answers arrive, so a rerun resumes) and `out_dir/results.json`. Values are percentages (0-100).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluation.metrics import RESAMPLES, macro_average, parse_prediction, score_task
from evaluation.predictions import PredictionLog, PredictionRecord, predictions_path
from evaluation.prompting import build_prompt, choose_demos, clean_completion, prompt_sha, sampling_params
from evaluation.schema import EvalItem, load_task_file
from selfspec.clients.protocols import Generator
from selfspec.errors import BackendError, BackendOverloaded, BackendResponseError, ConfigError, StageError
from selfspec.files import write_text_atomic
from selfspec.types import EvalResult

log = logging.getLogger(__name__)

MACRO_TASK = "macro_average"  # EvalResult.task of the per-(model, shots) macro average; n = number of tasks
MACRO_METRIC = "macro_avg"
RESULTS_FILE = "results.json"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TaskData:
    name: str
    path: Path
    pool: list[EvalItem]  # the whole file: demonstrations are drawn from here
    items: list[EvalItem]  # the items evaluated (the first max_items)


@dataclass(frozen=True)
class Job:
    model: str
    shots: int
    item: EvalItem
    prompt: str
    sha: str
    log: PredictionLog


def load_tasks(task_files: Sequence[Path], max_items: int | None) -> list[TaskData]:
    tasks: dict[str, TaskData] = {}
    for path in task_files:
        pool = load_task_file(path)
        name = pool[0].task
        if name in tasks:
            raise ConfigError(f"task {name!r} is defined twice: {tasks[name].path} and {path}")
        items = pool[:max_items] if max_items else pool
        tasks[name] = TaskData(name, Path(path), pool, items)
    return list(tasks.values())


async def _check_models(generator: Generator, models: Sequence[str]) -> None:
    served = set(await generator.list_models())
    missing = [m for m in models if m not in served]
    if missing:
        raise ConfigError(f"models not served by the generator: {missing} (served: {sorted(served)}); "
                          "load the adapters first")


def _plan(tasks: Sequence[TaskData], *, models: Sequence[str], shots: Sequence[int], out_dir: Path,
          seed: int) -> tuple[list[Job], dict[tuple[str, int, str], PredictionLog]]:
    """Build every prompt, open every prediction file and list the items still to answer."""
    jobs: list[Job] = []
    logs: dict[tuple[str, int, str], PredictionLog] = {}
    for task in tasks:
        for k in shots:
            if k >= len(task.pool):
                log.warning("task %s: %d-shot asked but only %d other items exist; using all of them",
                            task.name, k, len(task.pool) - 1)
            prompts = {item.id: build_prompt(item, choose_demos(item, task.pool, k, seed=seed))
                       for item in task.items}
            shas = {item_id: prompt_sha(prompt) for item_id, prompt in prompts.items()}
            for model in models:
                path = predictions_path(out_dir, model=model, task=task.name, shots=k)
                pred_log = logs[(model, k, task.name)] = PredictionLog(path, shas)
                jobs.extend(
                    Job(model, k, item, prompts[item.id], shas[item.id], pred_log)
                    for item in task.items if not pred_log.done(item.id)
                )
    return jobs, logs


def _record(job: Job, text: str, finish_reason: str) -> PredictionRecord:
    parsed = parse_prediction(job.item, text)
    gold = job.item.gold_entities if job.item.metric == "entity_f1" else str(job.item.output)
    return PredictionRecord(
        id=job.item.id, model=job.model, task=job.item.task, shots=job.shots, prompt_sha=job.sha,
        prediction=text, parsed=parsed, gold=gold, finish_reason=finish_reason,
    )


async def _run_jobs(generator: Generator, jobs: Sequence[Job], *, concurrency: int,
                    on_progress: Progress | None) -> list[tuple[Job, BackendError]]:
    """Answer jobs with at most `concurrency` calls in flight.

    A request the backend rejects (4xx) is recorded as an empty answer (scored wrong, redone on the
    next run). A backend that is down, overloaded or timing out stops new work; those items stay
    unanswered and are returned.
    """
    slots = asyncio.Semaphore(concurrency)
    stopped = asyncio.Event()
    transient: list[tuple[Job, BackendError]] = []
    finished = 0

    async def answer(job: Job) -> None:
        nonlocal finished
        try:
            completion = await generator.complete(job.prompt, model=job.model,
                                                  params=sampling_params(job.item.metric))
        except BackendResponseError as err:
            if isinstance(err, BackendOverloaded):
                transient.append((job, err))
                stopped.set()
                return
            log.warning("item %s (%s, %d-shot) rejected by the backend: %s", job.item.id, job.model,
                        job.shots, err)
            job.log.append(_record(job, "", f"error: HTTP {err.status}"))
        except BackendError as err:
            transient.append((job, err))
            stopped.set()
        else:
            job.log.append(_record(job, clean_completion(completion.text), completion.finish_reason))
        finally:
            slots.release()
            finished += 1
            if on_progress is not None:
                on_progress(finished, len(jobs))

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            await slots.acquire()
            if stopped.is_set():
                slots.release()
                break
            group.create_task(answer(job))
    return transient


def _score(tasks: Sequence[TaskData], logs: dict[tuple[str, int, str], PredictionLog], *,
           models: Sequence[str], shots: Sequence[int], resamples: int, seed: int) -> list[EvalResult]:
    results: list[EvalResult] = []
    for model in models:
        for k in shots:
            mains = []
            for task in tasks:
                pred_log = logs[(model, k, task.name)]
                texts = [pred_log.records[item.id].prediction for item in task.items]
                for score in score_task(task.items, texts, resamples=resamples, seed=seed):
                    results.append(EvalResult(
                        model=model, task=task.name, metric=score.measure, value=round(score.value, 4),
                        n=score.n, shots=k, ci_low=round(score.ci_low, 4), ci_high=round(score.ci_high, 4),
                        details_path=str(pred_log.path),
                    ))
                    if score.is_main:
                        mains.append(score)
            macro = macro_average(mains)
            results.append(EvalResult(
                model=model, task=MACRO_TASK, metric=MACRO_METRIC, value=round(macro.value, 4), n=macro.n,
                shots=k, ci_low=round(macro.ci_low, 4), ci_high=round(macro.ci_high, 4),
            ))
    return results


def save_results(results: Sequence[EvalResult], path: Path, *, config: dict[str, object]) -> None:
    payload = {"config": config, "results": [r.model_dump(mode="json") for r in results]}
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def load_results(path: Path) -> list[EvalResult]:
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    return [EvalResult.model_validate(r) for r in payload["results"]]


def _validate(models: Sequence[str], shots: Sequence[int], concurrency: int) -> None:
    if not models or len(set(models)) != len(models):
        raise ConfigError(f"models must be a non-empty list without repeats, got {list(models)}")
    if not shots or any(k < 0 for k in shots) or len(set(shots)) != len(shots):
        raise ConfigError(f"shots must be distinct non-negative integers, got {list(shots)}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")


async def evaluate(
    generator: Generator,
    *,
    models: list[str],
    task_files: list[Path],
    shots: list[int],
    out_dir: Path,
    max_items: int | None = None,
    concurrency: int = 16,
    seed: int = 0,
    resamples: int = RESAMPLES,
    on_progress: Progress | None = None,
) -> list[EvalResult]:
    """Evaluate every model on every task at every shot count; resumable; returns scores in percent.

    Per (model, task, shots) the main measure comes first, then secondary ones (see metrics.py);
    per (model, shots) one `MACRO_TASK` row averages the main measures over tasks.
    """
    _validate(models, shots, concurrency)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(task_files, max_items)
    await _check_models(generator, models)
    jobs, logs = _plan(tasks, models=models, shots=shots, out_dir=out_dir, seed=seed)
    total = sum(len(t.items) for t in tasks) * len(models) * len(shots)
    log.info("evaluating %d models x %d tasks x %d shot settings: %d answers, %d already done",
             len(models), len(tasks), len(shots), total, total - len(jobs))
    try:
        failed = await _run_jobs(generator, jobs, concurrency=concurrency, on_progress=on_progress)
    finally:
        for pred_log in logs.values():
            pred_log.close()
    if failed:
        job, err = failed[0]
        raise StageError("evaluate", job.item.id, f"{len(failed)} generation calls failed (first: {err}); "
                         f"answers so far are saved under {out_dir}; rerun the same command to resume") from err
    results = _score(tasks, logs, models=models, shots=shots, resamples=resamples, seed=seed)
    config = {
        "models": list(models), "shots": list(shots), "seed": seed, "resamples": resamples,
        "max_items": max_items, "value_unit": "percent",
        "tasks": [{"task": t.name, "path": str(t.path), "metric": t.items[0].metric, "n": len(t.items)}
                  for t in tasks],
    }
    save_results(results, out_dir / RESULTS_FILE, config=config)
    log.info("wrote %s", out_dir / RESULTS_FILE)
    return results
