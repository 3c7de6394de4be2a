"""`selfspec run -c FILE --dry-run`: start and probe the configured services, print the estimate."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.execution.estimate import Estimate, dry_run_estimate
from orchestrator.execution.services import open_services
from selfspec.files import write_text_atomic
from selfspec.settings import RunConfig


async def dry_run(config: RunConfig, console: Console) -> Estimate:
    started = time.monotonic()
    async with open_services(config) as services:
        startup = time.monotonic() - started
        result = await dry_run_estimate(config, generator=services.generator, retriever=services.retriever,
                                        startup_s=startup)
    print_estimate(console, result)
    path = estimate_path(config)
    write_text_atomic(path, json.dumps(result.to_dict(), indent=2) + "\n")
    console.print(f"estimate written to {path} (a run of this same config shows it next to its actual figures); "
                  "nothing was run")
    return result


def print_estimate(console: Console, result: Estimate) -> None:
    probe = result.probe
    console.print(f"probe: {probe['concurrency']} instruction prompts in flight, {probe['completion_tokens']} tokens "
                  f"in {probe['wall_s']:.1f}s = {probe['tokens_per_s']:.1f} tok/s; {probe['chars_per_token']:.1f} "
                  f"chars/prompt token; retrieval {probe['retrieval_s'] * 1000:.0f} ms; services up "
                  f"{probe['startup_s']:.1f}s")
    table = Table(title="dry run: estimate per stage")
    for column in ("stage", "requests", "prompt tokens", "completion tokens", "seconds", "basis"):
        table.add_column(column, justify="left" if column in ("stage", "basis") else "right")
    for s in result.stages:
        table.add_row(s.stage, str(s.requests), str(s.prompt_tokens), str(s.completion_tokens), f"{s.seconds:.0f}",
                      s.basis)
    table.add_row("total", "", "", str(result.tokens), f"{result.total_s:.0f} ({result.total_s / 60:.1f} min)", "")
    console.print(table)
    if result.cost is not None:
        console.print(f"cost: {result.tokens} tokens x {result.price_per_1k_tokens}/1k = {result.cost:.4f}")
    console.print("assumptions: " + "; ".join(result.assumptions))


def estimate_path(config: RunConfig) -> Path:
    """Where the dry run of this exact config (storage aside) keeps its estimate."""
    digest = hashlib.sha256(config.model_dump_json(exclude={"storage"}).encode()).hexdigest()[:12]
    return config.data_dir / "estimates" / f"{config.run.name}-{digest}.json"


def estimate_vs_actual(config: RunConfig, phase_seconds: dict[str, float]) -> list[dict[str, Any]] | None:
    """Rows (phase, estimated s, actual s) when a dry run of this config left an estimate; synthesis
    stages (instructions, responses, judge) of a round add up to its synthesis phase."""
    path = estimate_path(config)
    if not path.is_file():
        return None
    estimated: dict[str, float] = {}
    for stage in json.loads(path.read_text(encoding="utf-8"))["stages"]:
        name = stage["stage"]
        if name.endswith((":instructions", ":responses", ":judge")):
            name = name.split(":")[0] + ":synthesis"
        estimated[name] = estimated.get(name, 0.0) + stage["seconds"]
    return [{"phase": phase, "estimated_s": round(estimated.get(phase, 0.0), 1),
             "actual_s": round(phase_seconds[phase], 1) if phase in phase_seconds else None}
            for phase in dict.fromkeys([*estimated, *phase_seconds])]


def print_estimate_vs_actual(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="dry-run estimate vs actual (seconds)")
    for column in ("phase", "estimated", "actual"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for row in rows:
        actual = row["actual_s"]
        table.add_row(row["phase"], f"{row['estimated_s']:.0f}", "-" if actual is None else f"{actual:.0f}")
    console.print(table)
