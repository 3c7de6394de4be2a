"""`selfspec run -c FILE --dry-run`: start and probe the configured services, print the estimate."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.table import Table

from orchestrator.estimate import Estimate, dry_run_estimate
from orchestrator.services import open_services
from selfspec.settings import RunConfig


async def dry_run(config: RunConfig, console: Console) -> Estimate:
    started = time.monotonic()
    async with open_services(config) as services:
        startup = time.monotonic() - started
        result = await dry_run_estimate(config, generator=services.generator, retriever=services.retriever,
                                        startup_s=startup)
    print_estimate(console, result)
    path = config.data_dir / "estimates" / f"{config.run.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    console.print(f"estimate written to {path}; nothing was run")
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
