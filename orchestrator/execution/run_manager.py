"""The runs this API process drives: one asyncio task per active run, resumed after a restart.

By default each run executes in a worker process of its own (run_worker.py), so its CPU work never
competes with request handlers for the GIL; the task here owns that process: it starts it, relays its
client counters to /metrics, stops it with SIGTERM (SIGKILL after the grace period) when cancelled, and
records a failure if it dies without saying why. With `isolate=False` (or a custom services factory,
e.g. a test's fake trainer, which a child process could not rebuild) the task drives the run itself.
Tasks live on the loop thread (see loop_thread.py); the public methods are coroutines callable from the
HTTP loop, and hop to the loop thread themselves.

Runs are jobs (selfspec/jobs.py): they live in the store, and this only knows which of them have a task
in this process. On startup, runs the store still shows as pending/running/paused (the process died
under them) are started again; the driver resumes each from its committed items. On shutdown the tasks
are cancelled and their runs marked `paused` so the next start picks them up; a run cancelled by a
request is `cancelled` and stays so until `resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path

from orchestrator.execution.driver import AWAITING_REVIEW, RunDriver
from orchestrator.execution.evaluated_run import build_driver, execute_and_evaluate
from orchestrator.execution.generator_counters import GeneratorCounters
from orchestrator.execution.loop_thread import LoopThread
from orchestrator.execution.review import approve_round, sample_rounds
from orchestrator.execution.run_worker import WorkerInput
from orchestrator.execution.services import Services
from orchestrator.execution.stored_config import resumed_run_config, server_sections
from orchestrator.store import TERMINAL, RunRecord, RunStore
from selfspec.errors import IdempotencyKeyReused, RunStateConflict, SelfSpecError, TooManyRuns
from selfspec.jobs import JobTasks
from selfspec.processes import child_env, terminate
from selfspec.settings import RunConfig

log = logging.getLogger(__name__)

RESUME_ON_START = frozenset({"pending", "running", "paused"})
SHUTDOWN_REASON = "API server stopped; the run resumes when it starts again"
CANCEL_REASON = "cancelled by API request"
KILL_MARGIN_S = 5.0  # after SIGKILL, how long to wait for a worker to be reaped


def new_run_id(name: str) -> str:
    """`<name>-<uuid4 hex>`: unguessable and collision-free (the old 4 hex digits were neither), within
    the store's 64 characters (the name is cut to 31) and adapter names' 128 (`<run id>-r<round>`)."""
    return f"{name[:31]}-{uuid.uuid4().hex}"


class RunManager:
    def __init__(self, services: Services, *, server: RunConfig, loop_thread: LoopThread,
                 grace_s: float = 10.0, isolate: bool = True, counters: GeneratorCounters | None = None,
                 max_active: int = 8) -> None:
        self.services, self.server, self.loop_thread = services, server, loop_thread
        self.grace_s, self.isolate, self.max_active = grace_s, isolate, max_active
        self.counters = counters or GeneratorCounters(services.generator)
        self._tasks = JobTasks("run")
        self._cancelling: set[str] = set()

    @property
    def store(self) -> RunStore:
        return self.services.store

    def active(self) -> list[str]:
        return self._tasks.active()

    def is_active(self, run_id: str) -> bool:
        """A task drives the run, or a cancel of it is still settling its final status."""
        return run_id in self._tasks or run_id in self._cancelling

    # ---- helpers (loop thread) ----

    def _driver(self, config: RunConfig) -> RunDriver:
        """Validates the config against its files (seeds) too, before anything is written. Training knobs
        are per run; the job runner (and its jobs dir) is the server's."""
        return build_driver(config, self.services)

    def _check_capacity(self) -> None:
        """Creating or resuming one more run must stay within `max_active` (on the loop thread, so two
        requests cannot both take the last slot)."""
        if len(self._tasks) >= self.max_active:
            raise TooManyRuns(f"{len(self._tasks)} runs are active, the most this server drives at once "
                              f"(SELFSPEC_API_MAX_ACTIVE_RUNS = {self.max_active}); retry when one has ended, "
                              "or cancel one")

    def _start(self, run_id: str, driver: RunDriver) -> None:
        self._tasks.start(run_id, self._drive_worker(run_id) if self.isolate else self._drive(run_id, driver))

    async def _drive(self, run_id: str, driver: RunDriver) -> None:
        log.info("run %s started", run_id, extra={"run_id": run_id})
        try:
            # Like a run worker's: API runs are evaluated through POST /v1/evaluations, not here.
            await execute_and_evaluate(driver, run_id, services=self.services, evaluate=False)
        except SelfSpecError as err:
            log.warning("run %s failed: %s", run_id, err, extra={"run_id": run_id})
        except Exception:
            log.exception("run %s crashed", run_id, extra={"run_id": run_id})
        else:
            log.info("run %s completed", run_id, extra={"run_id": run_id})

    async def _drive_worker(self, run_id: str) -> None:
        log_path = self._worker_log(run_id)
        with open(log_path, "ab") as log_file:  # noqa: ASYNC230 (a local append, once per run)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orchestrator.execution.run_worker", run_id, "--parent-pid", str(os.getpid()),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                env=child_env(drop=("SELFSPEC_API_TOKEN",)))  # it calls the services, not this API
        log.info("run %s started in worker %d (log %s)", run_id, process.pid, log_path, extra={"run_id": run_id})
        assert process.stdin is not None and process.stdout is not None
        given = self.worker_input()
        process.stdin.write(given.model_dump_json().encode())
        process.stdin.close()
        relay = asyncio.create_task(self._relay_counters(run_id, process.stdout))
        try:
            code = await process.wait()
        except asyncio.CancelledError:  # SIGTERM lets the run record its state
            await terminate(process, grace_s=self.grace_s, kill_wait_s=KILL_MARGIN_S)
            raise
        finally:
            await relay
            self.counters.finish(run_id)
        status = self.store.get_run(run_id).status
        if status not in TERMINAL and status != AWAITING_REVIEW:  # it died before the driver could record why
            reason = f"run worker exited with code {code} in status {status!r}; see {log_path}"
            log.error("run %s: %s", run_id, reason, extra={"run_id": run_id})
            self.store.set_status(run_id, "failed", reason=reason)
        else:
            log.info("run %s ended %s (worker exit code %d)", run_id, status, code, extra={"run_id": run_id})

    def worker_input(self) -> WorkerInput:
        """What a run worker is told on stdin: this server's store, replicas and server-owned sections."""
        return WorkerInput(database_url=self.server.database_url, generator_urls=self.services.generator.urls,
                           server_sections=server_sections(self.server))

    def _stored_config(self, run: RunRecord) -> RunConfig:
        """A stored run's config under this server's current storage and services sections."""
        return resumed_run_config(run.config, server_sections(self.server))

    def _worker_log(self, run_id: str) -> Path:
        path = self.server.data_dir / "logs" / "runs" / f"{run_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def _relay_counters(self, run_id: str, stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(line)
                self.counters.update(run_id, int(data["retries"]), dict(data["outstanding"]))

    async def create(self, config: RunConfig, *, idempotency_key: str | None = None,
                     request_sha256: str = "") -> tuple[str, bool]:
        """Register and start a run; (run id, True). Seeds are read first, so a bad seeds file writes nothing.

        With an `idempotency_key` already recorded for the same request: (that run's id, False), nothing new;
        for a different request: `IdempotencyKeyReused`."""
        return await self.loop_thread.call(self._create(config, idempotency_key=idempotency_key,
                                                   request_sha256=request_sha256))

    async def resume(self, run_id: str) -> RunRecord:
        return await self.loop_thread.call(self._resume(run_id))

    async def cancel(self, run_id: str) -> None:
        await self.loop_thread.call(self._cancel(run_id))

    async def approve(self, run_id: str, *, by: str, note: str = "") -> RunRecord:
        """Approve a reviewed run: one `awaiting_review` goes on from its paused round's export (honouring
        the review); a completed one gets every round's dataset files exported again as reviewed."""
        return await self.loop_thread.call(self._approve(run_id, by=by, note=note))

    async def resume_interrupted(self) -> list[str]:
        return await self.loop_thread.call(self._resume_interrupted())

    async def aclose(self) -> None:
        """Stop every task; their runs are left `paused` for the next start to resume."""
        await self.loop_thread.call(self._aclose())

    # ---- on the loop thread ----

    async def _create(self, config: RunConfig, *, idempotency_key: str | None,
                      request_sha256: str) -> tuple[str, bool]:
        # No await from the key's lookup to its record: on the one loop thread, a concurrent retry of the
        # same request cannot slip in between (and one API process owns the data dir: data_dir_lock.py).
        store = self.services.store
        if idempotency_key is not None:
            known = store.idempotent_run(idempotency_key)
            if known is not None:
                if known[1] != request_sha256:
                    raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} was used for another request "
                                               f"(run {known[0]}); use a new key for a new run")
                return known[0], False
        self._check_capacity()
        driver = self._driver(config)
        run_id = driver.create(new_run_id(config.run.name))
        if idempotency_key is not None:
            store.record_idempotency_key(idempotency_key, run_id, request_sha256)
        self._start(run_id, driver)
        return run_id, True

    async def _resume(self, run_id: str) -> RunRecord:
        run = self.store.get_run(run_id)
        if self.is_active(run_id):
            raise RunStateConflict(f"run {run_id!r} is already running (or being cancelled)")
        if run.status == "completed":
            raise RunStateConflict(f"run {run_id!r} is completed; nothing to resume")
        self._check_capacity()
        driver = self._driver(self._stored_config(run))
        # Said at once: a worker process takes a moment to start, and until then the store would still
        # show the `failed`/`cancelled` the run is being resumed from.
        self.store.set_status(run_id, "running", reason=f"resumed by API request (was {run.status})")
        self._start(run_id, driver)
        return self.store.get_run(run_id)

    async def _approve(self, run_id: str, *, by: str, note: str) -> RunRecord:
        run = self.store.get_run(run_id)
        if self.is_active(run_id):
            raise RunStateConflict(f"run {run_id!r} is running; it can be approved once it awaits review")
        if run.status == AWAITING_REVIEW:
            self._check_capacity()
            approve_round(self.store, run_id, run.round, by=by, note=note)
            return await self._resume(run_id)  # the driver goes on from the approved round's export
        if run.status == "completed":
            # Training is not redone: the files and GET /dataset now show the review, the adapters do not.
            for rnd in sample_rounds(self.store, run_id):
                approve_round(self.store, run_id, rnd, by=by, note=note)
            driver = self._driver(self._stored_config(run))
            await asyncio.to_thread(driver.export_again, run_id)
            self.store.add_event(run_id, "review", {"action": "export", "by": by})
        else:
            raise RunStateConflict(f"run {run_id!r} is {run.status}: only a run awaiting review, or a completed "
                                   "one (its datasets are then exported again), can be approved")
        return self.store.get_run(run_id)

    async def _resume_interrupted(self) -> list[str]:
        """Start every run the store shows as in progress (this process is its only driver)."""
        runs = {run.id: run for run in self.store.list_runs() if run.status in RESUME_ON_START}
        return self._tasks.resume(
            [run_id for run_id in runs if run_id not in self._cancelling],
            start=lambda run_id: self._start(run_id, self._driver(self._stored_config(runs[run_id]))),
            failed=lambda run_id, err: self.store.set_status(run_id, "failed", reason=f"resume failed: {err}"))

    async def _cancel(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if not self.is_active(run_id) and run.status in TERMINAL:
            raise RunStateConflict(f"run {run_id!r} is already {run.status}")
        self._cancelling.add(run_id)
        try:
            await self._tasks.stop([run_id], timeout_s=self.grace_s + KILL_MARGIN_S)
        finally:
            self._cancelling.discard(run_id)
        if self.store.get_run(run_id).status != "completed":  # it may have finished meanwhile
            self.store.set_status(run_id, "cancelled", reason=CANCEL_REASON)

    async def _aclose(self) -> None:
        run_ids = self.active()
        await self._tasks.stop(run_ids, timeout_s=self.grace_s + KILL_MARGIN_S)
        for run_id in run_ids:
            if run_id not in self._cancelling and self.store.get_run(run_id).status not in ("completed", "failed"):
                self.store.set_status(run_id, "paused", reason=SHUTDOWN_REASON)
