"""A run in a process of its own, started and owned by the orchestrator API.

    python -m orchestrator.execution.run_worker RUN_ID --parent-pid PID
        < {"database_url": ..., "generator_urls": [...], "server_sections": {"storage": ..., "services": ...}}

Why a process: a run does CPU work between awaits (filter decisions, store commits, the generator
client's HTTP), and in the API process it shared one GIL with the request handlers, so 50 polling
clients cost the run a fifth of its rate (bench/bench_api.py). Here it has a core of its own.

The run's config comes from the store; stdin says only where the store is, which generator replicas
the API uses (it may have started the embedded one) and the API's current server-owned sections
(storage, services; they replace the run's stored copy), so no secret appears in the process list and
the worker never starts a generator or imports a corpus of its own. stdout carries one JSON line per
second with the generator client's counters, for the API's /metrics. SIGTERM cancels the run (the API
then records `cancelled` or `paused`); the worker exits by itself when the API process dies, and a
per-run lock keeps an orphan and its replacement from driving one run together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from orchestrator.execution.driver import run_dir
from orchestrator.execution.evaluated_run import build_driver, execute_and_evaluate
from orchestrator.execution.services import Services, open_services
from orchestrator.execution.stored_config import resumed_run_config
from orchestrator.store import RunStore
from selfspec.errors import SelfSpecError
from selfspec.processes import LockBusy, exclusive_lock, exit_with_parent
from selfspec.settings import RunConfig

log = logging.getLogger("selfspec.run_worker")

LOCK_WAIT_S = 30.0  # an orphaned worker of a killed API exits within a second; this covers it amply
STATS_INTERVAL_S = 1.0
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY, EXIT_CANCELLED = 1, 2, 3, 4


class WorkerInput(BaseModel):
    database_url: str
    generator_urls: list[str]
    server_sections: dict[str, Any]  # stored_config.server_sections of the API's config


def load_run_config(run_id: str, given: WorkerInput) -> RunConfig:
    """The run's stored config, under the API's current storage and services sections."""
    store = RunStore(given.database_url)
    try:
        return resumed_run_config(store.get_run(run_id).config, given.server_sections)
    finally:
        store.close()


def worker_lock_path(config: RunConfig, run_id: str) -> Path:
    return run_dir(config, run_id) / "worker.lock"


def write_counters(services: Services) -> None:
    """One line on stdout: what /metrics of the API shows for this run's generator client."""
    line = {"retries": services.generator.retry_count, "outstanding": services.generator.outstanding()}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def report_counters(services: Services) -> None:
    while True:
        write_counters(services)
        await asyncio.sleep(STATS_INTERVAL_S)


async def drive(run_id: str, config: RunConfig, generator_urls: list[str]) -> int:
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    async with open_services(config, generator_urls=generator_urls) as services:
        reporter = asyncio.create_task(report_counters(services))
        try:
            # Records completed/failed/cancelled (or awaiting_review, `rounds.review`) itself. An API run is
            # evaluated through POST /v1/evaluations, not here.
            outcome = await execute_and_evaluate(build_driver(config, services), run_id, services=services,
                                                 evaluate=False)
        except SelfSpecError as err:
            log.warning("run %s failed: %s", run_id, err)
            return EXIT_FAILED
        except asyncio.CancelledError:
            log.info("run %s stopped on request", run_id)
            return EXIT_CANCELLED
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            write_counters(services)  # the final count, retries of the last second included
    if outcome.summary.awaiting_review is not None:
        log.info("run %s awaits review of round %d", run_id, outcome.summary.awaiting_review)
    else:
        log.info("run %s completed", run_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive one run of the store (started by the orchestrator API).")
    parser.add_argument("run_id")
    parser.add_argument("--parent-pid", type=int, required=True, help="exit when this process is gone")
    args = parser.parse_args(argv)
    exit_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        given = WorkerInput.model_validate_json(sys.stdin.read())
        config = load_run_config(args.run_id, given)
    except (ValueError, SelfSpecError) as err:
        log.error("run worker for %s cannot start: %s", args.run_id, err)
        return EXIT_BAD_INPUT
    try:
        with exclusive_lock(worker_lock_path(config, args.run_id), wait_s=LOCK_WAIT_S):
            log.info("run worker %d drives run %s", os.getpid(), args.run_id)
            return asyncio.run(drive(args.run_id, config, given.generator_urls))
    except asyncio.CancelledError:  # SIGTERM while the services were still opening
        return EXIT_CANCELLED
    except LockBusy:
        log.error("another worker still drives run %s after %.0fs; giving up", args.run_id, LOCK_WAIT_S)
        return EXIT_BUSY


if __name__ == "__main__":
    sys.exit(main())
