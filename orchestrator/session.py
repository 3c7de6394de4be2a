"""`selfspec run` / `selfspec demo`: open services, drive the run, print what happened."""

from __future__ import annotations

import asyncio
import logging
import time

from rich.console import Console
from rich.table import Table

from orchestrator.driver import RunDriver, RunSummary
from orchestrator.services import Services, open_services
from selfspec.progress import RichProgress
from selfspec.prompts import render
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig
from selfspec.types import SamplingParams, SeedTask

log = logging.getLogger(__name__)


async def execute_run(config: RunConfig, *, resume: str | None, console: Console, compare: bool = False) -> RunSummary:
    seeds = load_seeds(config.resolve(config.run.seeds))
    started = time.monotonic()
    async with open_services(config) as services:
        console.print(f"services up in {time.monotonic() - started:.1f}s: generator {services.generator.urls}")
        driver = RunDriver(config=config, store=services.store, generator=services.generator,
                           retriever=services.retriever, trainer=services.trainer, seeds=seeds)
        run_id = resume or driver.create()
        console.print(f"run [bold]{run_id}[/] ({'resumed' if resume else 'new'}); store: {config.database_url}")
        with RichProgress(console) as progress:
            driver.progress = progress
            summary = await driver.execute(run_id)
        print_summary(console, services, summary)
        if compare and driver.held_out:
            await print_comparison(console, services, driver.held_out, config, summary)
    console.print(f"total wall time {time.monotonic() - started:.0f}s")
    return summary


def print_summary(console: Console, services: Services, summary: RunSummary) -> None:
    table = Table(title=f"run {summary.run_id}")
    for column in ("round", "samples ok", "failed", "prompts", "kept", "dropped (reason: n)", "adapter"):
        table.add_column(column)
    for rnd, result in summary.rounds.items():
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(result.verdicts.items()) if k != "kept") or "-"
        adapter = summary.adapters.get(rnd)
        table.add_row(str(rnd), str(result.ok), str(result.failed), str(result.prompts), str(result.kept), dropped,
                      adapter.name if adapter else "-")
    console.print(table)
    for rnd, path in summary.datasets.items():
        console.print(f"round {rnd} dataset: {path.parent}/{{sft,alpaca,messages,provenance}}.jsonl")
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
