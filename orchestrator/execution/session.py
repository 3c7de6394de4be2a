"""`selfspec run` / `selfspec demo`: open services, drive the run, print what happened."""

from __future__ import annotations

import asyncio
import logging
import time

from rich.console import Console
from rich.table import Table

from orchestrator.execution.driver import RunSummary
from orchestrator.execution.dry_run import print_estimate_vs_actual
from orchestrator.execution.evaluated_run import RunEvaluation, build_driver, execute_and_evaluate
from orchestrator.execution.services import Services, open_services
from orchestrator.pipeline.gates import JUDGE_UNPARSED_KEPT
from selfspec.progress import RichProgress
from selfspec.prompts import render
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig
from selfspec.types import SamplingParams, SeedTask
from selfspec.urls import redact_url

log = logging.getLogger(__name__)


async def execute_run(config: RunConfig, *, resume: str | None, console: Console, compare: bool = False) -> RunSummary:
    seeds = load_seeds(config.resolve(config.run.seeds))  # a bad seeds file fails before any service starts
    started = time.monotonic()
    async with open_services(config) as services:
        shown = ", ".join(redact_url(url) for url in services.generator.urls)
        services_up_s = time.monotonic() - started
        console.print(f"services up in {services_up_s:.1f}s: generator {shown}")
        driver = build_driver(config, services, seeds=seeds)
        run_id = resume or driver.create()
        console.print(f"run [bold]{run_id}[/] ({'resumed' if resume else 'new'}); store: {redact_url(config.database_url)}")

        async def report(summary: RunSummary) -> None:
            print_summary(console, services, summary)
            if summary.awaiting_review is not None:
                console.print(f"run [bold]{run_id}[/] awaits review of round {summary.awaiting_review} "
                              "(rounds.review): review it in the dashboard of `selfspec serve orchestrator` and "
                              f"approve there (or POST /v1/runs/{run_id}/approve); the API then goes on with the run")
            elif compare and driver.held_out:
                await print_comparison(console, services, driver.held_out, config, summary)

        outcome = await execute_and_evaluate(driver, run_id, services=services, progress=lambda: RichProgress(console),
                                             on_executed=report, services_up_s=services_up_s)
        summary = outcome.summary
        if summary.awaiting_review is not None:
            return summary
        if outcome.evaluation is not None:
            print_evaluation(console, outcome.evaluation, seconds=summary.phase_seconds["evaluation"])
        if outcome.estimate is not None:  # a dry run of this config left its estimate: next to the actual figures
            print_estimate_vs_actual(console, outcome.estimate)
    console.print(f"total wall time {time.monotonic() - started:.0f}s")
    return summary


def print_summary(console: Console, services: Services, summary: RunSummary) -> None:
    table = Table(title=f"run {summary.run_id}")
    for column in ("round", "samples ok", "failed", "prompts", "kept", "dropped (reason: n)",
                   "responses gated (gate: n)", "adapter"):
        table.add_column(column)
    for rnd, result in summary.rounds.items():
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(result.verdicts.items()) if k != "kept") or "-"
        gated = ", ".join(f"{k}: {v}" for k, v in sorted(result.gates.items())) or "-"
        failed = result.failed - sum(n for k, n in result.gates.items() if k != JUDGE_UNPARSED_KEPT)
        adapter = summary.adapters.get(rnd)
        table.add_row(str(rnd), str(result.ok), str(failed), str(result.prompts), str(result.kept), dropped, gated,
                      adapter.name if adapter else "-")
    console.print(table)
    for rnd, path in summary.datasets.items():
        console.print(f"round {rnd} dataset: {path.parent}/{{sft,alpaca,messages,provenance}}.jsonl")
    for note in summary.notes:
        console.print(note)
    for rnd, adapter in summary.adapters.items():
        console.print(f"round {rnd} adapter: {adapter.path}")
    timing = Table(title="wall time per phase")
    timing.add_column("phase")
    timing.add_column("seconds", justify="right")
    for phase, seconds in summary.phase_seconds.items():
        timing.add_row(phase, f"{seconds:.1f}")
    console.print(timing)


async def print_comparison(console: Console, services: Services, held_out: list[SeedTask], config: RunConfig,
                           summary: RunSummary) -> None:
    """Greedy answers to held-back seed tasks from the base model and each adapter, side by side."""
    models = [config.generation.model, *(a.name for a in summary.adapters.values())]
    params = SamplingParams(max_tokens=64, temperature=0.0, stop=("\n###", "###"))

    async def answer(seed: SeedTask, model: str) -> str:
        prompt = render("alpaca", instruction=seed.instruction, input=seed.input)
        return (await services.generator.complete(prompt, model=model, params=params)).text.strip()

    answers = await asyncio.gather(*[answer(seed, model) for seed in held_out for model in models])
    table = Table(title="before / after on held-back seed tasks", show_lines=True)
    table.add_column("task")
    table.add_column("reference")
    for model in models:
        table.add_column(model)
    for i, seed in enumerate(held_out):
        row = answers[i * len(models):(i + 1) * len(models)]
        table.add_row(seed.instruction[:120], seed.output[:120], *(a[:160] for a in row))
    console.print(table)


def print_evaluation(console: Console, evaluation: RunEvaluation, *, seconds: float) -> None:
    """The macro averages of base and each adapter, the contamination lines, where the report is."""
    from evaluation.runner import MACRO_TASK

    table = Table(title="evaluation (macro average over tasks, %, 95% CI)")
    for column in ("model", "shots", "scoring", "macro", "CI"):
        table.add_column(column)
    for result in evaluation.results:
        if result.task == MACRO_TASK and result.baseline is None:
            ci = f"{result.ci_low:.1f}-{result.ci_high:.1f}" if result.ci_low is not None else "-"
            table.add_row(result.model, str(result.shots), result.scoring, f"{result.value:.1f}", ci)
    console.print(table)
    for line in evaluation.contamination:
        console.print(line.line())
    console.print(f"evaluation report: [bold]{evaluation.report}[/] (+ report.png), {seconds:.0f}s")
