"""Training jobs behind one protocol: a local subprocess runner and an HTTP client for the trainer service.

Every job of `LocalSubprocessRunner` is a folder, so its state survives a restart of the runner:

    <jobs>/<id>/config.json     TrainConfig
    <jobs>/<id>/process.json    pid of `python -m trainer.train` once started
    <jobs>/<id>/progress.json   TrainProgress, rewritten after every step by the trainer process
    <jobs>/<id>/result.json     JobResult, the trainer process's last act (absent after kill -9)
    <jobs>/<id>/exit.json       the process's exit code, as seen by the runner
    <jobs>/<id>/train.log       its stdout + stderr

Training runs in its own process, so a crash (or OOM kill) cannot take the caller down. Trainings are
jobs (selfspec/jobs.py): each one's work resumes from its checkpoints. A job the runner stopped (`aclose`)
or lost (kill -9 of its process) has neither `result.json` nor `exit.json`: `resume_interrupted` starts
those again in their own folders (the trainer service does on start; a run worker's runner does not, it
shares the jobs dir with other runs), and submitting the same config again resumes from them too.

One training at a time per data dir, whoever starts it: every run worker process has a runner of its
own (and the trainer service another), so besides its in-process slots a job waits, `queued`, for an
exclusive `flock` on `<jobs>/../training.lock` before its trainer process starts. The trainer process
shares the lock's descriptor, so the slot stays taken while it lives, even past a killed runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from selfspec.errors import BackendTimeout, SelfSpecError
from selfspec.files import write_text_atomic
from selfspec.jobs import JobTasks
from selfspec.processes import child_env, terminate
from selfspec.settings import REPO_ROOT
from selfspec.types import AdapterRef
from trainer.config import TrainConfig
from trainer.progress import read_progress_file
from trainer.protocol import JobResult, JobStatus

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_LOG_TAIL_LINES = 5
SLOT_LOCK = "training.lock"  # next to the jobs dir: in the data dir the orchestrator and trainer share
SLOT_POLL_S = 0.5


class JobNotFound(SelfSpecError):
    pass


class TrainingJobFailed(SelfSpecError):
    def __init__(self, job_id: str, error: str) -> None:
        self.job_id, self.error = job_id, error
        super().__init__(f"training job {job_id} failed: {error}")


@runtime_checkable
class TrainingJobRunner(Protocol):
    """What the orchestrator and CLI depend on to train an adapter, locally or through the service."""

    async def submit(self, config: TrainConfig) -> str: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def wait(self, job_id: str, poll_s: float = 2.0) -> AdapterRef: ...


async def wait_for_job(runner: TrainingJobRunner, job_id: str, *, poll_s: float,
                       timeout_s: float | None = None) -> AdapterRef:
    """Poll until the job ends; its adapter on success, `TrainingJobFailed` otherwise."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while True:
        status = await runner.status(job_id)
        if status.state == "succeeded" and status.adapter is not None:
            return status.adapter
        if status.state == "failed" or status.state == "succeeded":
            raise TrainingJobFailed(job_id, status.error or "finished without an adapter")
        if deadline is not None and loop.time() >= deadline:
            raise BackendTimeout(f"job {job_id} still {status.state} after {timeout_s}s", backend="trainer")
        await asyncio.sleep(poll_s)


# ---- small file helpers (sync; tiny files) ----

def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-_LOG_TAIL_LINES:] if line.strip())


def _open_log(path: Path) -> BinaryIO:
    return open(path, "ab")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


@contextlib.asynccontextmanager
async def host_training_slot(path: Path, *, poll_s: float = SLOT_POLL_S) -> AsyncIterator[int]:
    """Wait (without blocking the loop) for the exclusive `flock` on `path`; yields its descriptor. The
    kernel drops the lock when every process holding the descriptor has closed it or died (kill -9
    included), so it is never stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("another training holds %s; waiting for it to finish", path)
                    waited = True
                await asyncio.sleep(poll_s)
        yield fd
    finally:
        os.close(fd)  # not LOCK_UN: a trainer process given the descriptor keeps the slot until it exits


class LocalSubprocessRunner:
    """Runs each job as `python -m trainer.train --config-json ...`, at most `max_concurrent` at a time in
    this runner and one at a time per `slot_lock` (default `<jobs_dir>/../training.lock`) on the host."""

    def __init__(self, jobs_dir: Path, *, python: str = sys.executable, max_concurrent: int = 1,
                 env: Mapping[str, str] | None = None, slot_lock: Path | None = None, grace_s: float = 10.0) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.slot_lock = slot_lock or self.jobs_dir.parent / SLOT_LOCK
        self._python = python
        self._slots = asyncio.Semaphore(max_concurrent)
        self._env = dict(env) if env is not None else _child_env()
        self._grace_s = grace_s
        self._tasks = JobTasks("training")
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._by_output: dict[str, str] = {}

    # ---- protocol ----

    async def submit(self, config: TrainConfig) -> str:
        """Start (or queue) a job; a job already active for the same output dir is returned instead."""
        key = str(config.output_dir.resolve())
        active = self._by_output.get(key)
        if active is not None and not (await self.status(active)).finished:
            log.info("job %s already trains %s", active, key)
            return active
        job_id = uuid.uuid4().hex
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        (job_dir / "config.json").write_text(config.to_json(), encoding="utf-8")
        self._by_output[key] = job_id
        self._tasks.start(job_id, self._run(job_id))
        log.info("job %s queued: adapter %s", job_id, config.name)
        return job_id

    def interrupted(self) -> list[str]:
        """Jobs whose trainer neither finished nor exited as far as any runner saw, that no task here drives."""
        if not self.jobs_dir.is_dir():
            return []
        return sorted(job.name for job in self.jobs_dir.iterdir()
                      if _JOB_ID.match(job.name) and (job / "config.json").is_file() and job.name not in self._tasks
                      and not (job / "result.json").exists() and not (job / "exit.json").exists())

    def resume_interrupted(self) -> list[str]:
        """Start every interrupted job again in its own folder (its trainer resumes from the checkpoints);
        one whose config no longer loads gets an `exit.json` saying so. The ids started."""
        def start(job_id: str) -> None:
            config = TrainConfig.from_json_file(self.jobs_dir / job_id / "config.json")
            self._by_output[str(config.output_dir.resolve())] = job_id
            self._tasks.start(job_id, self._run(job_id))

        def failed(job_id: str, err: Exception) -> None:
            _write_json(self.jobs_dir / job_id / "exit.json", {"returncode": 2})
            with _open_log(self.jobs_dir / job_id / "train.log") as log_file:
                log_file.write(f"cannot resume: {err}\n".encode())

        return self._tasks.resume(self.interrupted(), start=start, failed=failed)

    async def status(self, job_id: str) -> JobStatus:
        job_dir = self._job_dir(job_id)
        progress = read_progress_file(job_dir / "progress.json")
        result = self._result(job_dir)
        if result is not None:
            return JobStatus(id=job_id, state=result.state, adapter=result.adapter, error=result.error,
                             progress=progress)
        exit_info = _read_json(job_dir / "exit.json")
        if exit_info is not None:
            error = f"trainer process {_describe_exit(int(exit_info['returncode']))}"
            tail = _log_tail(job_dir / "train.log")
            return JobStatus(id=job_id, state="failed", error=f"{error}: {tail}" if tail else error,
                             progress=progress)
        if job_id in self._tasks:  # a resumed job's process.json names its previous, dead trainer
            return JobStatus(id=job_id, state="running" if job_id in self._procs else "queued", progress=progress)
        pid = self.pid(job_id)
        if pid is not None and _pid_alive(pid):  # another runner's
            return JobStatus(id=job_id, state="running", progress=progress)
        if pid is not None:
            return JobStatus(id=job_id, state="failed", error=f"trainer process {pid} was lost",
                             progress=progress)
        return JobStatus(id=job_id, state="failed", error="the runner stopped before the job started")

    async def wait(self, job_id: str, poll_s: float = 2.0, *, timeout_s: float | None = None) -> AdapterRef:
        return await wait_for_job(self, job_id, poll_s=poll_s, timeout_s=timeout_s)

    # ---- extras ----

    def pid(self, job_id: str) -> int | None:
        info = _read_json(self._job_dir(job_id) / "process.json")
        return int(info["pid"]) if info and "pid" in info else None

    def log_path(self, job_id: str) -> Path:
        return self._job_dir(job_id) / "train.log"

    async def aclose(self) -> None:
        """Stop every job: queued ones are dropped, running trainers get SIGTERM (SIGKILL after the grace
        period). Neither counts as the job's end: it stays interrupted, to be resumed."""
        await self._tasks.stop(timeout_s=self._grace_s + 10.0)

    # ---- internals ----

    def _job_dir(self, job_id: str) -> Path:
        job_dir = self.jobs_dir / job_id
        if not _JOB_ID.match(job_id) or not job_dir.is_dir():
            raise JobNotFound(f"no training job {job_id!r}")
        return job_dir

    @staticmethod
    def _result(job_dir: Path) -> JobResult | None:
        try:
            return JobResult.model_validate_json((job_dir / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    async def _run(self, job_id: str) -> None:
        job_dir = self.jobs_dir / job_id
        async with self._slots, host_training_slot(self.slot_lock) as slot_fd:
            command = [
                self._python, "-m", "trainer.train",
                "--config-json", str(job_dir / "config.json"),
                "--progress-file", str(job_dir / "progress.json"),
                "--result-file", str(job_dir / "result.json"),
                "--parent-pid", str(os.getpid()),
            ]
            log_file = _open_log(job_dir / "train.log")
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=self._env,
                    cwd=str(REPO_ROOT), start_new_session=True, pass_fds=(slot_fd,),
                )
            finally:
                log_file.close()  # the child holds its own descriptor
            self._procs[job_id] = proc
            _write_json(job_dir / "process.json", {"pid": proc.pid})
            log.info("job %s running as pid %d (log %s)", job_id, proc.pid, job_dir / "train.log")
            try:
                code = await proc.wait()
            except asyncio.CancelledError:  # stopped by the runner, not ended: no exit.json
                await terminate(proc, grace_s=self._grace_s)
                raise
            finally:
                self._procs.pop(job_id, None)
            _write_json(job_dir / "exit.json", {"returncode": code})
            log.info("job %s: trainer process %s", job_id, _describe_exit(code))


def _child_env() -> dict[str, str]:
    """The trainer process finds this checkout's packages first; its stdout is unbuffered for the log."""
    env = child_env()  # without the service tokens: it calls no service
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env
