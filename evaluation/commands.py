"""`selfspec eval` and `selfspec eval-convert`: typer command functions the CLI registers.

    selfspec eval evaluation/tasks/biomedical -m base,r1,r2 --shots 0,5 --scoring generate,choice -o runs/demo/eval
    selfspec eval-convert iob_ner /data/BC5CDR-IOB/test.tsv evaluation/tasks/converted --limit 500

Nothing heavy is imported here; the HTTP generator client is imported inside the command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from evaluation.converters import KINDS, convert
from evaluation.runner import MACRO_TASK, SCORING_MODES, evaluate
from evaluation.schema import find_task_files, load_task_file
from selfspec.console import print_error
from selfspec.errors import ConfigError, SelfSpecError
from selfspec.types import EvalResult

console = Console()
DEFAULT_GENERATOR_URL = "http://127.0.0.1:8001"


def _fail(err: Exception) -> typer.Exit:
    print_error(console, err)
    return typer.Exit(code=2)


def parse_csv(value: str, *, what: str) -> list[str]:
    items = [part.strip() for part in value.split(",") if part.strip()]
    if not items:
        raise ConfigError(f"{what}: expected a comma-separated list, got {value!r}")
    return items


def parse_shots(value: str) -> list[int]:
    try:
        return [int(part) for part in parse_csv(value, what="--shots")]
    except ValueError as err:
        raise ConfigError(f"--shots: expected integers like '0,5', got {value!r}") from err


def parse_scoring(value: str) -> list[str]:
    modes = parse_csv(value, what="--scoring")
    unknown = [m for m in modes if m not in SCORING_MODES]
    if unknown or len(set(modes)) != len(modes):
        raise ConfigError(f"--scoring: expected distinct modes out of {', '.join(SCORING_MODES)}, got {value!r}")
    return modes


def _summary(results: list[EvalResult]) -> Table:
    table = Table(title="Macro average of main measures (%, 95% CI; differences paired)")
    for column in ("model", "shots", "scoring", "macro avg", "CI"):
        table.add_column(column)
    for result in results:
        if result.task == MACRO_TASK:
            name = result.model if result.baseline is None else f"{result.model} − {result.baseline}"
            value = f"{result.value:.2f}" if result.baseline is None else f"{result.value:+.2f}"
            table.add_row(name, str(result.shots), result.scoring, value,
                          f"[{result.ci_low:.2f}, {result.ci_high:.2f}]")
    return table


async def _run_eval(*, urls: list[str], models: list[str], task_files: list[Path], shots: list[int], out: Path,
                    max_items: int | None, concurrency: int, seed: int, scoring: list[str],
                    timeout_s: float) -> list[EvalResult]:
    from selfspec.clients.openai_compat import OpenAICompatGenerator

    generator = OpenAICompatGenerator(urls, in_flight=concurrency, timeout_s=timeout_s)
    progress = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("eval", total=None)
            return await evaluate(
                generator, models=models, task_files=task_files, shots=shots, out_dir=out,
                max_items=max_items, concurrency=concurrency, seed=seed, scoring=scoring,
                on_progress=lambda done, total: progress.update(bar, completed=done, total=total),
            )
    finally:
        await generator.aclose()


def eval_command(
    tasks: Annotated[list[Path], typer.Argument(help="task JSONL files, or directories of them")],
    models: Annotated[str, typer.Option("--models", "-m", help="comma-separated served model names, "
                                        "base first, then adapters (e.g. base,r1,r2)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output dir: predictions, results.json, report")],
    shots: Annotated[str, typer.Option(help="comma-separated shot counts, e.g. 0,5")] = "0",
    scoring: Annotated[str, typer.Option(help="comma-separated scoring modes: generate (parse the greedy answer), "
                                         "choice (log-likelihood of each label), constrained (decoding limited to "
                                         "the labels); label tasks take all three, others generate")] = "generate",
    generator_url: Annotated[list[str] | None, typer.Option(
        "--generator-url", help=f"generator replica URL (repeatable; default {DEFAULT_GENERATOR_URL})")] = None,
    max_items: Annotated[int, typer.Option(min=0, help="first N items per task (0 = all)")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="generation calls in flight")] = 16,
    seed: Annotated[int, typer.Option(help="seed for k-shot demonstrations and bootstrap")] = 0,
    timeout_s: Annotated[float, typer.Option(
        min=1, help="per-request timeout; a CPU generator with a long queue needs minutes")] = 1200.0,
    contamination_dataset: Annotated[list[Path] | None, typer.Option(
        "--contamination-dataset", help="synthetic dataset JSONL to check for n-gram overlap (repeatable)")] = None,
    ngram: Annotated[int, typer.Option(min=1, help="n for the contamination check")] = 13,
) -> None:
    """Evaluate base vs adapters on biomedical tasks; writes predictions, results.json, report.md/png."""
    from evaluation.contamination import check_contamination, dataset_texts
    from evaluation.report import write_report

    try:
        task_files = find_task_files(tasks)
        results = asyncio.run(_run_eval(
            urls=generator_url or [DEFAULT_GENERATOR_URL], models=parse_csv(models, what="--models"),
            task_files=task_files, shots=parse_shots(shots), out=out, max_items=max_items or None,
            concurrency=concurrency, seed=seed, scoring=parse_scoring(scoring), timeout_s=timeout_s,
        ))
        items = [item for path in task_files for item in load_task_file(path)]
        contamination = [
            check_contamination(dataset_texts(path), items, n=ngram, dataset=path.name)
            for path in contamination_dataset or ()
        ]
        report = write_report(results, out, contamination=contamination)
    except SelfSpecError as err:
        raise _fail(err) from err
    console.print(_summary(results))
    for check in contamination:
        console.print(check.line())
    console.print(f"report: [bold]{report}[/] (+ {report.with_suffix('.png').name}, results.json)")


def convert_command(
    kind: Annotated[str, typer.Argument(help=f"source format: {', '.join(KINDS)}")],
    src: Annotated[Path, typer.Argument(help="source file or directory in its original format")],
    out: Annotated[Path, typer.Argument(help="a .jsonl file (one task) or a directory (one file per task)")],
    limit: Annotated[int, typer.Option(min=0, help="at most N items per task, seeded sample (0 = all)")] = 0,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    task: Annotated[str | None, typer.Option(help="task name (default: derived from the source)")] = None,
    types: Annotated[str | None, typer.Option(help="NER: comma-separated entity types forming one task")] = None,
) -> None:
    """Convert a public dataset (IOB NER, ChemProt, DDI-2013, PubMedQA, HoC) to evaluation task files."""
    try:
        written = convert(kind, src, out, limit=limit or None, seed=seed, task=task,
                          types=parse_csv(types, what="--types") if types else None)
    except SelfSpecError as err:
        raise _fail(err) from err
    for path in written:
        count = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        console.print(f"{path}: {count} items")
