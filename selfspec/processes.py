"""Child-process lifecycle shared by the processes we start (generator, trainer, run workers), and the
file lock that keeps one of them per resource."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
