"""Evaluation throughput per scoring mode on the embedded default: items per second, same server, same run.

    .venv/bin/python bench/bench_eval_scoring.py [--model smollm2-135m] [--items 20] [--concurrency 16]

Starts the embedded generator, then evaluates the shipped biomedical label tasks (the first N items of
each) in `generate`, `choice` and `constrained` mode, each into a fresh directory (nothing resumed),
and prints items/s per mode and the ratio to `generate`. A last line measures what one request per
item buys in `choice` mode: the item's bare prompt and prompt + option rows in one request, against
one request per row.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console

from evaluation.prompting import build_prompt
from evaluation.runner import TARGET_DELIMITER, evaluate, load_tasks
from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.models import DEFAULT_MODEL, pull_model
from selfspec.processes import ManagedServer, child_env, free_port
from services.generator.launcher import embedded_generator_command

REPO = Path(__file__).resolve().parents[1]
TASKS = [REPO / "evaluation/tasks/biomedical" / f"{name}.jsonl"
         for name in ("drug_interaction", "drug_review_sentiment", "pubmed_yes_no")]


async def _timed_eval(url: str, model: str, mode: str, *, items: int, concurrency: int) -> tuple[float, int]:
    async with OpenAICompatGenerator([url], in_flight=concurrency, timeout_s=1200) as generator:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            await evaluate(generator, models=[model], task_files=TASKS, shots=[0], out_dir=Path(out),
                           max_items=items, concurrency=concurrency, scoring=[mode], resamples=10)
            seconds = time.perf_counter() - started
    return seconds, sum(len(t.items) for t in load_tasks(TASKS, items))


async def _rows_per_request(url: str, model: str, *, items: int, concurrency: int, together: bool) -> float:
    """choice-mode requests by hand: all rows of an item in one request, or one request per row."""
    prompts = []
    for task in load_tasks(TASKS, items):
        for item in task.items:
            prompt = build_prompt(item, [])
            prompts.append([prompt, *(prompt + TARGET_DELIMITER + label for label in item.label_set)])
    slots = asyncio.Semaphore(concurrency)
    async with OpenAICompatGenerator([url], in_flight=concurrency, timeout_s=1200) as generator:
        async def one(rows: list[str]) -> None:
            async with slots:
                await generator.prompt_logprobs(rows, model=model)

        started = time.perf_counter()
        if together:
            await asyncio.gather(*(one(rows) for rows in prompts))
        else:
            await asyncio.gather(*(one([row]) for rows in prompts for row in rows))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a model of the registry (selfspec models list)")
    parser.add_argument("--items", type=int, default=20, help="first N items of each of the 3 label tasks")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    console = Console()
    model_dir = pull_model(args.model, REPO / ".cache/selfspec")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = embedded_generator_command(model=str(model_dir), port=port, adapters_dir=REPO / ".selfspec/adapters",
                                         cache_dir=REPO / ".cache/selfspec", max_batch=16)
    with ManagedServer(command, url=url, log_path=REPO / ".selfspec/logs/bench-eval-scoring.log", env=child_env()):
        import httpx

        served = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        asyncio.run(_timed_eval(url, served, "choice", items=2, concurrency=args.concurrency))  # warm-up
        asyncio.run(_timed_eval(url, served, "generate", items=2, concurrency=args.concurrency))
        rates = {}
        for mode in ("generate", "choice", "constrained"):
            seconds, count = asyncio.run(_timed_eval(url, served, mode, items=args.items,
                                                     concurrency=args.concurrency))
            rates[mode] = count / seconds
            console.print(f"{mode:<12} {count} items in {seconds:6.1f} s = {rates[mode]:6.2f} items/s")
        together = asyncio.run(_rows_per_request(url, served, items=args.items, concurrency=args.concurrency,
                                                 together=True))
        apart = asyncio.run(_rows_per_request(url, served, items=args.items, concurrency=args.concurrency,
                                              together=False))
    console.print(f"model={args.model}  choice/generate = {rates['choice'] / rates['generate']:.1f}x  "
                  f"constrained/generate = {rates['constrained'] / rates['generate']:.1f}x")
    console.print(f"choice rows of an item in one request: {together:.1f} s; one request per row: {apart:.1f} s "
                  f"({apart / together:.1f}x)")


if __name__ == "__main__":
    main()
