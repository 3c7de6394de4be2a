"""Does the API's loop thread still pay for itself, now that runs live in worker processes?

    .venv/bin/python bench/bench_loop_thread.py                      # 2 repeats of each mode
    .venv/bin/python bench/bench_loop_thread.py --items 4000 --clients 20 --repeats 3

What is left in the API process is the work of evaluations (POST /v1/evaluations: the generator client's
HTTP, parsing and scoring of every answer), the tasks that own run workers, and the service clients. The
same API (`python -m orchestrator.api`, fake generator, default run workers) is started in two modes:
`SELFSPEC_API_LOOP_THREAD=true` (that work on a thread of its own, the default) and `false` (all on the
HTTP loop), alternating `--repeats` times. In each, one run (`--target` samples, in its worker process)
and one evaluation (`--items` generated answers) start together while `--clients` clients poll
`GET /v1/runs/{id}` and `GET /v1/evaluations/{id}`. Reported per mode: read latency p50/p99, the
evaluation's answers/s and the run's samples/s, and the ratios thread / inline. Not a test: it asserts
nothing. Every request goes to 127.0.0.1; each phase stops after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from bench.bench_api import Load, percentile, samples_per_second, timed_get  # noqa: E402
from orchestrator.store import TERMINAL, RunStore  # noqa: E402
from selfspec.clients.pool import pooled_transport  # noqa: E402
from selfspec.processes import ManagedServer, free_port  # noqa: E402
from tests.integration.test_api_support import api_server, config_data, config_toml  # noqa: E402

console = Console()
MODES = {"thread": "true", "inline": "false"}


@dataclass
class Phase:
    mode: str
    load: Load
    eval_rate: float  # answers/s of the evaluation
    run_rate: float  # samples/s of the run


def write_task(path: Path, items: int) -> None:
    """One yes/no task of `items` answers to generate and score (written for this bench)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(items):
            f.write(json.dumps({"id": f"bench-{i:05d}", "task": "bench_yes_no",
                                "instruction": "Answer with one of: yes, no.",
                                "input": f"Is {i} an even number?", "output": "yes" if i % 2 == 0 else "no",
                                "metric": "yes_no", "labels": ["yes", "no"]}) + "\n")


async def poll(client: httpx.AsyncClient, url: str, route: str, load: Load, stop: asyncio.Event,
               think_s: float) -> None:
    while not stop.is_set():
        await timed_get(client, load, route, url)
        await asyncio.sleep(think_s)


async def measure(base_url: str, store: RunStore, *, mode: str, items: int, clients: int, max_s: float,
                  think_s: float) -> Phase:
    load = Load(latencies={"run": [], "evaluation": []})
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits,
                                 transport=pooled_transport(clients + 4)) as client:
        started = time.monotonic()
        run = (await client.post("/v1/runs", json={"run": {"name": mode}})).raise_for_status().json()["id"]
        evaluation = (await client.post("/v1/evaluations", json={
            "models": ["fake-base"], "tasks": ["bench"], "max_items": items, "concurrency": 32,
        })).raise_for_status().json()["id"]
        pollers = [asyncio.create_task(poll(client, *(
            (f"/v1/runs/{run}", "run") if i % 2 == 0 else (f"/v1/evaluations/{evaluation}", "evaluation")),
            load, stop, think_s)) for i in range(clients)]
        eval_s = None
        while time.monotonic() - started < max_s:
            row = (await client.get(f"/v1/evaluations/{evaluation}")).json()
            if eval_s is None and row["status"] not in ("pending", "running"):
                eval_s = time.monotonic() - started
                if row["status"] != "completed":
                    console.print(f"[red]{mode}: evaluation {row['status']}: {row['error']}[/]")
            if eval_s is not None and await asyncio.to_thread(lambda: store.get_run(run).status in TERMINAL):
                break
            await asyncio.sleep(0.2)
        else:
            console.print(f"[yellow]{mode}: stopped after {max_s:.0f}s[/]")
        stop.set()
        await asyncio.gather(*pollers)
    return Phase(mode, load, items / eval_s if eval_s else float("nan"), samples_per_second(store, run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000, help="answers the evaluation generates and scores")
    parser.add_argument("--target", type=int, default=300, help="samples of the run")
    parser.add_argument("--clients", type=int, default=20, help="concurrent API clients")
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause of each client between requests")
    parser.add_argument("--latency", type=float, default=0.01, help="fake generator latency per call (s)")
    parser.add_argument("--repeats", type=int, default=2, help="phases per mode, alternating")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()

    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-thread-") as tmp_dir:
        tmp = Path(tmp_dir)
        gen_port = free_port()
        fake = ManagedServer(
            [sys.executable, "-m", "tests.fakes.serve", "--port", str(gen_port), "--latency", str(args.latency)],
            url=f"http://127.0.0.1:{gen_port}", log_path=tmp / "fake.log",
            env={**os.environ, "PYTHONPATH": str(REPO)}, startup_timeout_s=60)
        with fake:
            order = [mode for n in range(args.repeats) for mode in (MODES if n % 2 == 0 else reversed(MODES))]
            for n, mode in enumerate(order):
                work = tmp / f"phase{n}"
                data = config_data(work, fake.url, target=args.target)
                data["generation"].update({"instruction_workers": 4, "response_workers": 8})
                config = work / "bench.toml"
                config.parent.mkdir(parents=True)
                config.write_text(config_toml(data))
                write_task(work / "data" / "eval-tasks" / "bench" / "bench_yes_no.jsonl", args.items)
                os.environ["SELFSPEC_API_LOOP_THREAD"] = MODES[mode]
                port = free_port()
                with api_server(config, port, work / "api.log"):
                    store = RunStore(f"sqlite:///{work / 'data' / 'selfspec.db'}")
                    try:
                        phases.append(asyncio.run(measure(f"http://127.0.0.1:{port}", store, mode=mode,
                                                          items=args.items, clients=args.clients,
                                                          max_s=args.max_seconds, think_s=args.think_ms / 1000)))
                    finally:
                        store.close()
    report(phases, args)


def report(phases: list[Phase], args: argparse.Namespace) -> None:
    load1, load5, _ = os.getloadavg()
    console.print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min) / {load5:.1f} (5 min)")
    table = Table(title=f"{args.clients} clients polling while a run ({args.target} samples) and an evaluation "
                        f"({args.items} answers) execute; fake generator {args.latency * 1000:.0f} ms/call")
    for column in ("mode", "reads", "p50 ms", "p99 ms", "evaluation answers/s", "run samples/s"):
        table.add_column(column, justify="right")
    summary: dict[str, tuple[float, float, float, float]] = {}
    for mode in MODES:
        mine = [p for p in phases if p.mode == mode]
        reads = [v for p in mine for route in p.load.latencies.values() for v in route]
        summary[mode] = (percentile(reads, 0.5), percentile(reads, 0.99),
                         statistics.mean(p.eval_rate for p in mine), statistics.mean(p.run_rate for p in mine))
        p50, p99, eval_rate, run_rate = summary[mode]
        table.add_row(mode, str(len(reads)), f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", f"{eval_rate:.1f}",
                      f"{run_rate:.1f}")
    console.print(table)
    errors = sum(p.load.errors for p in phases)
    thread, inline = summary["thread"], summary["inline"]
    console.print(f"errors: {errors}; [bold]thread / inline: p50 {thread[0] / inline[0]:.2f}, p99 "
                  f"{thread[1] / inline[1]:.2f}, evaluation answers/s {thread[2] / inline[2]:.2f}, run samples/s "
                  f"{thread[3] / inline[3]:.2f}[/] (means of {args.repeats} phases a mode)")


if __name__ == "__main__":
    main()
