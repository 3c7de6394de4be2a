"""Background jobs of one process, and the one resume story that runs, evaluations and trainings share.

A job is work that outlives the request that started it: a run (orchestrator/execution/run_manager.py),
an evaluation (orchestrator/execution/evaluation_jobs.py) or a training (trainer/jobs.py). Each kind keeps
its state where it lives (runs and evaluations in the store, a training in its job folder), and each
job's work is idempotent: it goes on from what it committed (items in the store, predictions appended to
the evaluation's files, the trainer's checkpoints). So the lifecycle is the same for all three, and it
is written here once:

- `start` runs a job as one asyncio task, keyed by its id, and forgets it when it ends;
- `stop` cancels tasks and waits for them to settle (a task that owns a child process ends it first);
  the job's stored state is left for the next start;
- `resume` starts, when the process starts, every job whose stored state says it was interrupted
  (not ended) and that no task drives; one that cannot be started is recorded as failed, not retried
  forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

log = logging.getLogger(__name__)


class JobTasks:
    """The tasks driving jobs of one kind in this process, by job id (read from any thread)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._tasks

    def active(self) -> list[str]:
        return sorted(tuple(self._tasks))  # read from other threads: copy in one C-level step

    def start(self, job_id: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Drive `work` as the task of `job_id` (on the running loop); it leaves this set when it ends."""
        if job_id in self._tasks:
            work.close()
            raise RuntimeError(f"{self.kind} {job_id} already has a task")
        task = asyncio.create_task(work, name=f"{self.kind}-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return task

    async def join(self, *, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the current tasks to end by themselves; whether they all did."""
        tasks = list(self._tasks.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return not pending

    async def stop(self, job_ids: Iterable[str] | None = None, *, timeout_s: float) -> list[str]:
        """Cancel the tasks of `job_ids` (all by default) and wait up to `timeout_s` for them to end;
        the ids of those that did not end in time."""
        tasks = {job_id: self._tasks[job_id] for job_id in (self.active() if job_ids is None else job_ids)
                 if job_id in self._tasks}
        for task in tasks.values():
            task.cancel()
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks.values(), timeout=timeout_s)
        late = [job_id for job_id, task in tasks.items() if task in pending]
        for job_id in late:
            log.warning("%s %s did not stop within %.0fs", self.kind, job_id, timeout_s)
        return late

    def resume(self, interrupted: Iterable[str], start: Callable[[str], None],
               failed: Callable[[str, Exception], None]) -> list[str]:
        """Start each job of `interrupted` that no task drives, with `start(job_id)` (which reads the job's
        stored state and calls `self.start`); a job it cannot start goes to `failed(job_id, error)`.
        The ids started."""
        resumed = []
        for job_id in interrupted:
            if job_id in self._tasks:
                continue
            try:
                start(job_id)
            except Exception as err:  # a boundary that records: one bad job must not stop the others
                log.error("cannot resume %s %s: %s", self.kind, job_id, err)
                failed(job_id, err)
                continue
            log.info("resuming %s %s", self.kind, job_id)
            resumed.append(job_id)
        return resumed
