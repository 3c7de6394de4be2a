"""Child-process lifecycle shared by the processes we start (generator, trainer, run workers, test and
bench servers): a free port, the environment a child gets, a server started and stopped by its PID, and
the file lock that keeps one of them per resource."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from selfspec.auth import SECRET_ENV
from selfspec.errors import BackendUnavailable

log = logging.getLogger(__name__)


def exit_with_parent(parent_pid: int, *, interval_s: float = 1.0) -> None:
    """In a child process: exit when the parent is gone (even after its kill -9), never orphaned."""

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone; exiting", parent_pid)
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class LockBusy(Exception):
    """Another process holds the lock (and kept it for the whole wait)."""


@contextmanager
def exclusive_lock(path: Path, *, wait_s: float = 0.0, poll_s: float = 0.2) -> Iterator[IO[str]]:
    """An exclusive `flock` on `path`, waiting up to `wait_s` for its holder; yields the open file.

    The kernel drops a `flock` when its holder dies (kill -9 included), so a crash never leaves a
    stale lock; the wait covers an orphan of a killed parent, which exits within a second.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if time.monotonic() >= deadline:
                    raise LockBusy(str(path)) from err
                time.sleep(poll_s)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def lower_thread_priority(increment: int) -> bool:
    """Lower the calling thread's CPU priority by `increment` nice steps; threads it starts later inherit
    it, processes other threads start do not. Linux only (there nice is per thread; elsewhere it would
    lower the whole process). Returns whether it changed anything."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(current + increment, 19))
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None,
                 health_path: str = "/health") -> None:
    def healthy() -> bool:
        if process is not None and process.poll() is not None:
            raise BackendUnavailable(f"server process exited with code {process.returncode}", backend=url)
        try:
            return httpx.get(f"{url}{health_path}", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    retrying = Retrying(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(timeout_s),
                        wait=wait_fixed(0.5), retry_error_callback=lambda state: False)
    if not retrying(healthy):
        raise BackendUnavailable(f"no healthy answer within {timeout_s:.0f}s", backend=url)


class ManagedServer:
    """A child server process: started here, ended here by its PID, logs in a file."""

    def __init__(self, command: list[str], *, url: str, log_path: Path, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 180.0, health_path: str = "/health", cwd: Path | None = None) -> None:
        self.command, self.url, self.log_path = command, url, log_path
        self.env, self.startup_timeout_s = env, startup_timeout_s
        self.health_path, self.cwd = health_path, cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        log.info("starting %s (log: %s)", " ".join(self.command[:6]), self.log_path)
        self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=self.cwd, start_new_session=True)
        log_file.close()
        try:
            wait_healthy(self.url, timeout_s=self.startup_timeout_s, process=self.process,
                         health_path=self.health_path)
        except BackendUnavailable:
            self.stop()
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BackendUnavailable("server did not become healthy; last log lines:\n" + "\n".join(tail),
                                     backend=self.url) from None
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def terminate(process: asyncio.subprocess.Process, *, grace_s: float, kill_wait_s: float = 5.0) -> None:
    """End a child we started: SIGTERM lets it record its state; SIGKILL if it is still there after
    `grace_s`. Waits for it to be reaped (at most `kill_wait_s` after the SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=grace_s)
    except TimeoutError:
        log.warning("process %d ignored SIGTERM for %.0fs; killing it", process.pid, grace_s)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), timeout=kill_wait_s)


def child_env(*, drop: Iterable[str] = SECRET_ENV) -> dict[str, str]:
    """This process's environment for a child, without the secrets in `drop` (by default every token:
    an embedded generator we start binds loopback and needs none; it would refuse our clients with
    a `VLLM_API_KEY` meant for a remote vLLM)."""
    env = {key: value for key, value in os.environ.items() if key not in set(drop)}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env
