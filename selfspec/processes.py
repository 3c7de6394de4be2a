"""Child-process lifecycle shared by the services we start (generator, trainer)."""

from __future__ import annotations

import logging
import os
import threading
import time

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
