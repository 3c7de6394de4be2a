"""API benchmark: reads under load while a run writes, and what that load costs the run.

    .venv/bin/python bench/bench_api.py                       # 300 samples/run, 50 clients
    .venv/bin/python bench/bench_api.py --target 600 --clients 100 --latency 0.02
    .venv/bin/python bench/bench_api.py --target 1500 --think-ms 1000  # dashboards polling once a second

The fake generator (tests/fakes) and the API (`python -m orchestrator.api`) run as child processes on
free loopback ports. Three runs of the same config: a baseline without API load, the same run while
`--clients` concurrent clients poll `GET /v1/runs/{id}` (half of them) and page through
`GET /v1/runs/{id}/samples` by cursor (the other half), alternating (`--repeats` loaded runs, each
between two baselines, so drift as the store grows cancels out). Each run executes in its own worker
process (the API's default), as users get it. Reported: requests/s and p50/p99 latency per route,
and the loaded runs' mean samples/s over the baselines' mean (1.0 = no cost).
Not a test: it prints figures and ratios and asserts nothing. Every request goes to 127.0.0.1 and the
load stops when the run completes or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from orchestrator.api.queries import as_utc  # noqa: E402
from orchestrator.store import RunStore  # noqa: E402
from selfspec.clients.pool import pooled_transport  # noqa: E402
from selfspec.processes import ManagedServer, free_port  # noqa: E402
from tests.integration.test_api_support import api_server, config_data, config_toml  # noqa: E402

console = Console()


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"run": [], "samples": []})
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    pages_walked: int = 0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def samples_per_second(store: RunStore, run_id: str) -> float:
    """Steady-state rate: samples committed between the first and the last one."""
    stamps = sorted(as_utc(row["created_at"]) for row in store.samples_page(run_id, limit=100_000))
    span = (stamps[-1] - stamps[0]).total_seconds()
    return (len(stamps) - 1) / span if span > 0 else float("nan")


def run_done(store: RunStore, run_id: str) -> bool:
    return store.get_run(run_id).status in ("completed", "failed", "cancelled")


async def timed_get(client: httpx.AsyncClient, load: Load, route: str, url: str,
                    params: dict[str, int] | None = None) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await client.get(url, params=params)
    except httpx.HTTPError as err:
        load.error(type(err).__name__)
        return None
    load.latencies[route].append(time.perf_counter() - started)
    if response.status_code != 200:
        load.error(f"HTTP {response.status_code}")
        return None
    return response


async def poll_run(client: httpx.AsyncClient, run_id: str, load: Load, stop: asyncio.Event, think_s: float) -> None:
    while not stop.is_set():
        await timed_get(client, load, "run", f"/v1/runs/{run_id}")
        await asyncio.sleep(think_s)


async def page_samples(client: httpx.AsyncClient, run_id: str, load: Load, stop: asyncio.Event,
                       think_s: float) -> None:
    cursor = 0
    while not stop.is_set():
        await asyncio.sleep(think_s)
        response = await timed_get(client, load, "samples", f"/v1/runs/{run_id}/samples",
                                   params={"cursor": cursor, "limit": 50})
        if response is None:
            continue
        page = response.json()
        if page["has_more"]:
            cursor = page["next_cursor"]
        else:
            cursor, load.pages_walked = 0, load.pages_walked + 1  # caught up with the writer: start over


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the process itself, and of its reaped children (the run workers)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system), float(times.children_user + times.children_system)


@dataclass
class Phase:
    rate: float  # samples/s of the run
    load: Load
    wall: float
    api_cpu: float  # CPU seconds the API process used during the phase
    worker_cpu: float  # CPU seconds of the run's worker process


async def execute(base_url: str, store: RunStore, *, name: str, clients: int, max_s: float,
                  think_s: float) -> tuple[str, Load, float]:
    load = Load()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    # aiohttp's pool under httpx, like our own clients: httpcore's pool costs the client ~2.6 ms of CPU
    # per request at 50 connections, CPU this 2-core machine's API and run would not get.
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits,
                                 transport=pooled_transport(clients + 2)) as client:
        response = await client.post("/v1/runs", json={"run": {"name": name}})
        response.raise_for_status()
        run_id = response.json()["id"]
        started = time.monotonic()
        workers = [asyncio.create_task((poll_run if i % 2 == 0 else page_samples)(client, run_id, load, stop, think_s))
                   for i in range(clients)]
        while not await asyncio.to_thread(run_done, store, run_id):
            if time.monotonic() - started > max_s:
                console.print(f"[yellow]{name}: stopped after {max_s:.0f}s[/]")
                break
            await asyncio.sleep(0.2)
        wall = time.monotonic() - started
        stop.set()
        await asyncio.gather(*workers)
    return run_id, load, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=int, default=300, help="samples per run")
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients during the loaded run")
    parser.add_argument("--latency", type=float, default=0.02, help="fake generator latency per call (s)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="pause of each client between requests (0 = closed loop, the worst case; "
                        "1000 = dashboards polling once a second)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="give up on a run after this long")
    parser.add_argument("--repeats", type=int, default=2, help="loaded runs, each between two baselines")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_dir:
        tmp = Path(tmp_dir)
        gen_port, api_port = free_port(), free_port()
        fake = ManagedServer(
            [sys.executable, "-m", "tests.fakes.serve", "--port", str(gen_port), "--latency", str(args.latency)],
            url=f"http://127.0.0.1:{gen_port}", log_path=tmp / "fake.log",
            env={**os.environ, "PYTHONPATH": str(REPO)}, startup_timeout_s=60)
        data = config_data(tmp, fake.url, target=args.target)
        data["generation"].update({"instruction_workers": 4, "response_workers": 8})
        config = tmp / "bench.toml"
        config.write_text(config_toml(data))
        with fake, api_server(config, api_port, tmp / "api.log") as api:
            assert api.process is not None
            store = RunStore(f"sqlite:///{tmp / 'data' / 'selfspec.db'}")
            base_url = f"http://127.0.0.1:{api_port}"
            try:
                results = {}
                phases = [("baseline1", 0)]
                for n in range(1, args.repeats + 1):
                    phases += [(f"loaded{n}", args.clients), (f"baseline{n + 1}", 0)]
                for name, clients in phases:
                    cpu, children = cpu_seconds(api.process.pid)
                    run_id, load, wall = asyncio.run(execute(base_url, store, name=name, clients=clients,
                                                             max_s=args.max_seconds, think_s=args.think_ms / 1000))
                    time.sleep(0.5)  # let the API reap the worker, so its CPU time is counted
                    cpu_after, children_after = cpu_seconds(api.process.pid)
                    results[name] = Phase(samples_per_second(store, run_id), load, wall, cpu_after - cpu,
                                          children_after - children)
            finally:
                store.close()
    report(results, args)


def report(results: dict[str, Phase], args: argparse.Namespace) -> None:
    load1, load5, _ = os.getloadavg()
    console.print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min) / {load5:.1f} (5 min)")
    runs = Table(title=f"run throughput ({args.target} samples, fake generator {args.latency * 1000:.0f} ms/call)")
    for column in ("run", "API clients", "samples/s", "wall s", "API process CPU s", "run worker CPU ms/sample"):
        runs.add_column(column, justify="right")
    for name, phase in results.items():
        runs.add_row(name, str(args.clients if name.startswith("loaded") else 0), f"{phase.rate:.1f}",
                     f"{phase.wall:.1f}", f"{phase.api_cpu:.1f}", f"{phase.worker_cpu / args.target * 1000:.2f}")
    console.print(runs)
    loaded = [phase for name, phase in results.items() if name.startswith("loaded")]
    baselines = [phase for name, phase in results.items() if name.startswith("baseline")]
    wall = sum(phase.wall for phase in loaded)
    reads = Table(title=f"API reads while the runs write ({args.clients} concurrent clients, "
                        f"{args.think_ms:.0f} ms between requests)")
    for column in ("route", "requests", "req/s", "p50 ms", "p99 ms"):
        reads.add_column(column, justify="right")
    everything: list[float] = []
    for route, label in (("run", "GET /v1/runs/{id}"), ("samples", "GET /v1/runs/{id}/samples")):
        values = [v for phase in loaded for v in phase.load.latencies[route]]
        everything += values
        reads.add_row(label, str(len(values)), f"{len(values) / wall:.0f}", f"{percentile(values, 0.5) * 1000:.1f}",
                      f"{percentile(values, 0.99) * 1000:.1f}")
    reads.add_row("all", str(len(everything)), f"{len(everything) / wall:.0f}",
                  f"{percentile(everything, 0.5) * 1000:.1f}", f"{percentile(everything, 0.99) * 1000:.1f}")
    console.print(reads)
    errors = sum(phase.load.errors for phase in loaded)
    kinds: dict[str, int] = {}
    for phase in loaded:
        for kind, n in phase.load.error_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
    idle_cpu = statistics.mean(phase.api_cpu / phase.wall for phase in baselines)
    busy_cpu = sum(phase.api_cpu for phase in loaded) - idle_cpu * wall
    console.print(f"errors: {errors} {kinds or ''}; full sample walks: {sum(p.load.pages_walked for p in loaded)}; "
                  f"API CPU per read: {busy_cpu / max(len(everything), 1) * 1000:.2f} ms")
    rate = statistics.mean(phase.rate for phase in loaded)
    baseline = statistics.mean(phase.rate for phase in baselines)
    console.print(f"[bold]samples/s under API load / without: {rate / baseline:.2f}[/] "
                  f"({rate:.1f} vs {baseline:.1f}: means of {len(loaded)} loaded and {len(baselines)} baseline runs)")


if __name__ == "__main__":
    main()
