"""One API process per data dir: it is the only driver of the runs it resumes on startup.

An exclusive `flock` on `<data_dir>/orchestrator.lock`, held for the app's lifetime; the OS drops it
when the process dies (kill -9 included), so a restart never finds a stale lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from selfspec.errors import ConfigError
from selfspec.processes import LockBusy, exclusive_lock

LOCK_NAME = "orchestrator.lock"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._stack: contextlib.ExitStack | None = None

    def acquire(self) -> DataDirLock:
        stack = contextlib.ExitStack()
        try:
            handle = stack.enter_context(exclusive_lock(self.path))
        except LockBusy as err:
            holder = self.path.read_text(encoding="utf-8").strip() or "?"
            raise ConfigError(f"another orchestrator API (pid {holder}) serves {self.path.parent}; "
                              "one API process per data dir drives its runs") from err
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._stack = stack
        return self

    def release(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
