"""The runs this API process drives: one asyncio task per active run, resumed after a restart.

Run tasks live on the engine loop (see engine.py); the public methods are coroutines callable from
the HTTP loop, and hop to the engine themselves.

Runs live in the store, not here: this only knows which of them have a task in this process. On
startup, runs the store still shows as pending/running/paused (the process died under them) are
started again; the driver resumes each from its committed items. On shutdown the tasks are
cancelled and their runs marked `paused` so the next start picks them up; a run cancelled by a
request is `cancelled` and stays so until `resume`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from orchestrator.app.engine import Engine
from orchestrator.app.errors import RunStateConflict
from orchestrator.app.queries import TERMINAL
from orchestrator.app.run_configs import stored_run_config
from orchestrator.driver import AdapterTrainer, RunDriver
from orchestrator.services import LocalAdapterTrainer, Services
from orchestrator.store import RunStore
from selfspec.errors import SelfSpecError
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig

log = logging.getLogger(__name__)

RESUME_ON_START = frozenset({"pending", "running", "paused"})
SHUTDOWN_REASON = "API server stopped; the run resumes when it starts again"
CANCEL_REASON = "cancelled by API request"


class RunManager:
    def __init__(self, services: Services, *, engine: Engine, grace_s: float = 10.0) -> None:
        self.services, self.engine = services, engine
        self.grace_s = grace_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()

    @property
    def store(self) -> RunStore:
        return self.services.store

    def active(self) -> list[str]:
        return sorted(tuple(self._tasks))  # read from other threads: copy in one C-level step

    def is_active(self, run_id: str) -> bool:
        """A task drives the run, or a cancel of it is still settling its final status."""
        return run_id in self._tasks or run_id in self._cancelling

    # ---- helpers (engine loop) ----

    def _trainer(self, config: RunConfig) -> AdapterTrainer:
        trainer = self.services.trainer
        if isinstance(trainer, LocalAdapterTrainer):
            # Training knobs are per run; the job runner (and its jobs dir) is the server's.
            return LocalAdapterTrainer(config, runner=trainer.runner)
        return trainer

    def _driver(self, config: RunConfig) -> RunDriver:
        seeds = load_seeds(config.resolve(config.run.seeds))
        return RunDriver(config=config, store=self.store, generator=self.services.generator,
                         retriever=self.services.retriever, trainer=self._trainer(config), seeds=seeds)

    def _start(self, run_id: str, driver: RunDriver) -> None:
        task = asyncio.create_task(self._drive(run_id, driver), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def _drive(self, run_id: str, driver: RunDriver) -> None:
        log.info("run %s started", run_id, extra={"run_id": run_id})
        try:
            await driver.execute(run_id)
        except SelfSpecError as err:
            log.warning("run %s failed: %s", run_id, err, extra={"run_id": run_id})
        except Exception:
            log.exception("run %s crashed", run_id, extra={"run_id": run_id})
        else:
            log.info("run %s completed", run_id, extra={"run_id": run_id})

    async def create(self, config: RunConfig) -> str:
        """Register and start a run. Seeds are read first, so a bad seeds file writes nothing."""
        return await self.engine.call(self._create(config))

    async def resume(self, run_id: str) -> dict[str, Any]:
        return await self.engine.call(self._resume(run_id))

    async def cancel(self, run_id: str) -> None:
        await self.engine.call(self._cancel(run_id))

    async def resume_interrupted(self) -> list[str]:
        return await self.engine.call(self._resume_interrupted())

    async def aclose(self) -> None:
        """Stop every task; their runs are left `paused` for the next start to resume."""
        await self.engine.call(self._aclose())

    # ---- on the engine loop ----

    async def _create(self, config: RunConfig) -> str:
        driver = self._driver(config)
        run_id = driver.create()
        self._start(run_id, driver)
        return run_id

    async def _resume(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        if self.is_active(run_id):
            raise RunStateConflict(f"run {run_id!r} is already running (or being cancelled)")
        if run["status"] == "completed":
            raise RunStateConflict(f"run {run_id!r} is completed; nothing to resume")
        self._start(run_id, self._driver(stored_run_config(run["config"])))
        return run

    async def _resume_interrupted(self) -> list[str]:
        """Start every run the store shows as in progress (this process is its only driver)."""
        resumed = []
        for run in self.store.list_runs():
            if run["status"] not in RESUME_ON_START or self.is_active(run["id"]):
                continue
            try:
                self._start(run["id"], self._driver(stored_run_config(run["config"])))
            except (SelfSpecError, ValueError) as err:
                log.error("cannot resume run %s: %s", run["id"], err)
                self.store.set_status(run["id"], "failed", reason=f"resume failed: {err}")
                continue
            log.info("resuming run %s (was %s in phase %s)", run["id"], run["status"], run["phase"])
            resumed.append(run["id"])
        return resumed

    async def _stop(self, run_ids: list[str]) -> None:
        tasks = [self._tasks[r] for r in run_ids if r in self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace_s)
            for task in pending:
                log.warning("%s did not stop within %.0fs", task.get_name(), self.grace_s)

    async def _cancel(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        if not self.is_active(run_id) and run["status"] in TERMINAL:
            raise RunStateConflict(f"run {run_id!r} is already {run['status']}")
        self._cancelling.add(run_id)
        try:
            await self._stop([run_id])
        finally:
            self._cancelling.discard(run_id)
        if self.store.get_run(run_id)["status"] != "completed":  # it may have finished meanwhile
            self.store.set_status(run_id, "cancelled", reason=CANCEL_REASON)

    async def _aclose(self) -> None:
        run_ids = self.active()
        await self._stop(run_ids)
        for run_id in run_ids:
            if run_id not in self._cancelling and self.store.get_run(run_id)["status"] not in ("completed", "failed"):
                self.store.set_status(run_id, "paused", reason=SHUTDOWN_REASON)
