"""Pause instead of burning items: when a service stays down, the run waits (state `paused`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from selfspec.errors import BackendError

log = logging.getLogger(__name__)


class ServiceDown(BackendError):
    """The service stayed unreachable past the pause window; the run should fail."""


class Circuit:
    """Shared by all workers of a run: one of them probes health while the others wait."""

    def __init__(
        self,
        *,
        name: str,
        probe: Callable[[], Awaitable[bool]],
        on_pause: Callable[[str], None],
        on_resume: Callable[[], None],
        pause_after_s: float,
        max_pause_s: float,
        probe_interval_s: float = 1.0,
    ) -> None:
        self.name, self._probe = name, probe
        self._on_pause, self._on_resume = on_pause, on_resume
        self.pause_after_s, self.max_pause_s, self.probe_interval_s = pause_after_s, max_pause_s, probe_interval_s
        self._first_failure: float | None = None
        self._lock = asyncio.Lock()
        self.paused = False

    def record_success(self) -> None:
        self._first_failure = None
        if self.paused:
            # Another worker's call got through while the pausing one sleeps between probes: the service
            # is back. Said here, since the round may reach its target (and cancel the prober) before
            # the next probe.
            self._resume()

    def _resume(self) -> None:
        self.paused = False
        log.info("%s is back; resuming run", self.name)
        self._on_resume()

    async def record_failure(self, err: BackendError) -> None:
        """Called after a call exhausted its retries. Returns when the caller should try again."""
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        if now - self._first_failure < self.pause_after_s:
            await asyncio.sleep(min(self.probe_interval_s, self.pause_after_s))
            return
        async with self._lock:
            if await self._probe():
                self._first_failure = None
                return
            self.paused = True
            reason = f"{self.name} unavailable: {err}"
            log.warning("pausing run: %s", reason)
            self._on_pause(reason)
            deadline = time.monotonic() + self.max_pause_s
            while not await self._probe():
                if time.monotonic() > deadline:
                    raise ServiceDown(f"still down after {self.max_pause_s:.0f}s: {err}", backend=self.name)
                await asyncio.sleep(self.probe_interval_s)
            self._first_failure = None
            if self.paused:  # unless a successful call already said so
                self._resume()
