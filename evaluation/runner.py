"""Run evaluation tasks against served models (base and adapters) and score them.

    results = await evaluate(generator, models=["base", "r1", "r2"], task_files=[...], shots=[0, 5],
                             out_dir=Path("runs/x/eval"), scoring=["generate", "choice"])

Scoring modes (evaluation/README.md): `generate` (greedy answer, parsed), `choice` (label tasks:
summed log-probability of each option after the prompt, lm-evaluation-harness style, all options of
an item in one request), `constrained` (label tasks: decoding constrained to the labels).

Writes `out_dir/predictions/<model>/<task>.<k>shot[.<mode>].jsonl` (one line per answered item,
appended as answers arrive, so a rerun resumes) and `out_dir/results.json`. Values are percentages
(0-100). After every model's rows come paired differences (`EvalResult.baseline` set): each model
minus the first, and each later model minus the one before it, on the same bootstrap resamples.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluation.metrics import (
    RESAMPLES,
    Score,
    macro_average,
    paired_difference,
    parse_prediction,
    score_choice_task,
    score_task,
)
from evaluation.predictions import PredictionLog, PredictionRecord, predictions_path
from evaluation.prompting import build_prompt, choose_demos, clean_completion, prompt_sha, sampling_params
from evaluation.schema import EvalItem, Metric, load_task_file
from selfspec.clients.protocols import Generator, Scorer
from selfspec.errors import (
    BackendError,
    BackendOverloaded,
    BackendResponseError,
    ConfigError,
    ParseError,
    StageError,
)
from selfspec.files import write_text_atomic
from selfspec.types import EvalResult, TokenLogprobs

log = logging.getLogger(__name__)

MACRO_TASK = "macro_average"  # EvalResult.task of the per-(model, shots) macro average; n = number of tasks
MACRO_METRIC = "macro_avg"
RESULTS_FILE = "results.json"
SCORING_MODES: tuple[str, ...] = ("generate", "choice", "constrained")
LABEL_METRICS: frozenset[Metric] = frozenset({"label_f1", "yes_no"})  # the metrics choice/constrained can score
# Between prompt and option in choice scoring. lm-evaluation-harness puts " " after contexts like
# "Answer:"; our prompts end in "### Response:\n", after which an answer starts directly (that is what
# an adapter is trained to write), so a leading space would score an unnatural tokenisation.
TARGET_DELIMITER = ""
Progress = Callable[[int, int], None]
LogKey = tuple[str, int, str, str]  # (model, shots, task, scoring mode)


def supports(metric: Metric, mode: str) -> bool:
    """Every task can be generated; only label tasks have options to score or constrain to."""
    return mode == "generate" or metric in LABEL_METRICS


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
    mode: str
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


def _plan(tasks: Sequence[TaskData], *, models: Sequence[str], shots: Sequence[int], scoring: Sequence[str],
          out_dir: Path, seed: int) -> tuple[list[Job], dict[LogKey, PredictionLog]]:
    """Build every prompt, open every prediction file and list the items still to answer."""
    jobs: list[Job] = []
    logs: dict[LogKey, PredictionLog] = {}
    for task in tasks:
        modes = [mode for mode in scoring if supports(task.items[0].metric, mode)]
        if len(modes) < len(scoring):
            log.info("task %s (%s) is scored by generation only", task.name, task.items[0].metric)
        for k in shots:
            if k >= len(task.pool):
                log.warning("task %s: %d-shot asked but only %d other items exist; using all of them",
                            task.name, k, len(task.pool) - 1)
            prompts = {item.id: build_prompt(item, choose_demos(item, task.pool, k, seed=seed))
                       for item in task.items}
            shas = {item_id: prompt_sha(prompt) for item_id, prompt in prompts.items()}
            for mode in modes:
                for model in models:
                    path = predictions_path(out_dir, model=model, task=task.name, shots=k, scoring=mode)
                    pred_log = logs[(model, k, task.name, mode)] = PredictionLog(path, shas)
                    jobs.extend(
                        Job(model, k, mode, item, prompts[item.id], shas[item.id], pred_log)
                        for item in task.items if not pred_log.done(item.id)
                    )
    return jobs, logs


def _record(job: Job, text: str, finish_reason: str, option_logprobs: list[float] | None = None) -> PredictionRecord:
    parsed = parse_prediction(job.item, text)
    gold = job.item.gold_entities if job.item.metric == "entity_f1" else str(job.item.output)
    return PredictionRecord(
        id=job.item.id, model=job.model, task=job.item.task, shots=job.shots, prompt_sha=job.sha,
        prediction=text, parsed=parsed, gold=gold, finish_reason=finish_reason, option_logprobs=option_logprobs,
    )


def continuation_logprob(context: TokenLogprobs, full: TokenLogprobs) -> float:
    """Summed log-probability of the tokens of `full` after those it shares with `context` (the prompt
    alone): lm-evaluation-harness's continuation log-likelihood, found without the model's tokenizer.
    Where the tokenizer merges across the boundary, the merged token counts as continuation."""
    shared = 0
    for mine, theirs in zip(context.tokens, full.tokens, strict=False):
        if mine != theirs:
            break
        shared += 1
    shared = min(shared, len(full.tokens) - 1)  # at least one token is the option's
    values = full.token_logprobs[max(shared, 1):]
    if any(v is None for v in values):
        raise ParseError("a continuation token came back without a log-probability")
    return float(sum(v for v in values if v is not None))


async def _answer(generator: Generator, job: Job) -> PredictionRecord:
    """One item in one scoring mode (the backend errors propagate)."""
    params = sampling_params(job.item.metric)
    if job.mode == "generate":
        completion = await generator.complete(job.prompt, model=job.model, params=params)
        return _record(job, clean_completion(completion.text), completion.finish_reason)
    assert isinstance(generator, Scorer)  # checked by evaluate()
    labels = list(job.item.label_set)
    if job.mode == "constrained":
        completion = await generator.choose(job.prompt, labels, model=job.model, params=params)
        return _record(job, completion.text.strip(), completion.finish_reason)
    # choice: the bare prompt and prompt + delimiter + each option, one request, one forward pass where
    # the backend batches (the bare prompt marks where the options' tokens begin).
    rows = await generator.prompt_logprobs(
        [job.prompt, *(job.prompt + TARGET_DELIMITER + label for label in labels)], model=job.model)
    sums = [continuation_logprob(rows[0], row) for row in rows[1:]]
    best = labels[max(range(len(sums)), key=sums.__getitem__)]
    return _record(job, best, "scored", option_logprobs=sums)


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
            record = await _answer(generator, job)
        except ParseError as err:
            log.warning("item %s (%s, %d-shot, %s): unusable answer from the backend: %s", job.item.id, job.model,
                        job.shots, job.mode, err)
            job.log.append(_record(job, "", "error: unusable response"))
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
            job.log.append(record)
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


def _task_scores(task: TaskData, pred_log: PredictionLog, mode: str, *, resamples: int, seed: int) -> list[Score]:
    records = [pred_log.records[item.id] for item in task.items]
    if mode == "choice":
        return score_choice_task(task.items, [r.option_logprobs or [] for r in records], resamples=resamples,
                                 seed=seed)
    return score_task(task.items, [r.prediction for r in records], resamples=resamples, seed=seed)


def _result(score: Score, *, model: str, task: str, metric: str, shots: int, mode: str,
            baseline: str | None = None, details_path: str = "") -> EvalResult:
    return EvalResult(
        model=model, task=task, metric=metric, value=round(score.value, 4), n=score.n, shots=shots,
        ci_low=round(score.ci_low, 4), ci_high=round(score.ci_high, 4), details_path=details_path,
        scoring=mode, baseline=baseline,
    )


def comparisons(models: Sequence[str]) -> list[tuple[str, str]]:
    """(model, baseline) pairs: every model against the first (base), then each later model against
    the one before it (r2 - r1), in the order given."""
    pairs = [(model, models[0]) for model in models[1:]]
    return pairs + [(models[i], models[i - 1]) for i in range(2, len(models))]


def _score(tasks: Sequence[TaskData], logs: dict[LogKey, PredictionLog], *, models: Sequence[str],
           shots: Sequence[int], scoring: Sequence[str], resamples: int, seed: int) -> list[EvalResult]:
    results: list[EvalResult] = []
    mains: dict[tuple[str, int, str, str], Score] = {}  # (mode, shots, task, model) -> main score
    for mode in scoring:
        scored = [task for task in tasks if supports(task.items[0].metric, mode)]
        if not scored:
            continue
        for model in models:
            for k in shots:
                for task in scored:
                    pred_log = logs[(model, k, task.name, mode)]
                    for score in _task_scores(task, pred_log, mode, resamples=resamples, seed=seed):
                        results.append(_result(score, model=model, task=task.name, metric=score.measure, shots=k,
                                               mode=mode, details_path=str(pred_log.path)))
                        if score.is_main:
                            mains[(mode, k, task.name, model)] = score
                macro = macro_average([mains[(mode, k, task.name, model)] for task in scored])
                mains[(mode, k, MACRO_TASK, model)] = macro
                results.append(_result(macro, model=model, task=MACRO_TASK, metric=MACRO_METRIC, shots=k, mode=mode))
    for (mode, k, task_name, model), score in list(mains.items()):
        for other, baseline in comparisons(models):
            if other != model:
                continue
            diff = paired_difference(score, mains[(mode, k, task_name, baseline)])
            metric = MACRO_METRIC if task_name == MACRO_TASK else score.measure
            results.append(_result(diff, model=model, task=task_name, metric=metric, shots=k, mode=mode,
                                   baseline=baseline))
    return results


def save_results(results: Sequence[EvalResult], path: Path, *, config: dict[str, object]) -> None:
    payload = {"config": config, "results": [r.model_dump(mode="json") for r in results]}
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def load_results(path: Path) -> list[EvalResult]:
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    return [EvalResult.model_validate(r) for r in payload["results"]]


def _validate(models: Sequence[str], shots: Sequence[int], concurrency: int, scoring: Sequence[str],
              generator: Generator) -> None:
    unknown = [mode for mode in scoring if mode not in SCORING_MODES]
    if not scoring or unknown or len(set(scoring)) != len(scoring):
        raise ConfigError(f"scoring must be distinct modes out of {list(SCORING_MODES)}, got {list(scoring)}")
    if set(scoring) - {"generate"} and not isinstance(generator, Scorer):
        raise ConfigError(f"scoring {list(scoring)} needs a generator that scores prompts (echo + logprobs) "
                          f"and constrains choices; {type(generator).__name__} does not")
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
    scoring: Sequence[str] = ("generate",),
) -> list[EvalResult]:
    """Evaluate every model on every task at every shot count in every scoring mode; resumable;
    returns scores in percent.

    Per (mode, model, task, shots) the main measure comes first, then secondary ones (see metrics.py);
    per (mode, model, shots) one `MACRO_TASK` row averages the main measures over the tasks the mode
    scores. Rows come mode by mode in `scoring` order, so the first mode's rows are found first; the
    paired differences (`baseline` set) come last.
    """
    _validate(models, shots, concurrency, scoring, generator)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(task_files, max_items)
    await _check_models(generator, models)
    jobs, logs = _plan(tasks, models=models, shots=shots, scoring=scoring, out_dir=out_dir, seed=seed)
    per_model = sum(len(t.items) * sum(supports(t.items[0].metric, m) for m in scoring) for t in tasks)
    total = per_model * len(models) * len(shots)
    log.info("evaluating %d models x %d tasks x %d shot settings x scoring %s: %d answers, %d already done",
             len(models), len(tasks), len(shots), "/".join(scoring), total, total - len(jobs))
    try:
        failed = await _run_jobs(generator, jobs, concurrency=concurrency, on_progress=on_progress)
    finally:
        for pred_log in logs.values():
            pred_log.close()
    if failed:
        job, err = failed[0]
        raise StageError("evaluate", job.item.id, f"{len(failed)} generation calls failed (first: {err}); "
                         f"answers so far are saved under {out_dir}; rerun the same command to resume") from err
    results = _score(tasks, logs, models=models, shots=shots, scoring=scoring, resamples=resamples, seed=seed)
    config = {
        "models": list(models), "shots": list(shots), "scoring": list(scoring), "seed": seed, "resamples": resamples,
        "max_items": max_items, "value_unit": "percent",
        "tasks": [{"task": t.name, "path": str(t.path), "metric": t.items[0].metric, "n": len(t.items)}
                  for t in tasks],
    }
    save_results(results, out_dir / RESULTS_FILE, config=config)
    log.info("wrote %s", out_dir / RESULTS_FILE)
    return results
