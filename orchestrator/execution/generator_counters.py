"""The generator client's counters of an API process and its run workers, summed for /metrics."""

from __future__ import annotations

from typing import Any


class GeneratorCounters:
    """The generator client's counters, summed over this process's client and its run workers' clients.

    Workers report theirs once a second (orchestrator/execution/run_worker.py); a finished worker's retries stay counted, so
    the total never goes down, and its outstanding calls drop out.
    """

    def __init__(self, own: Any) -> None:
        self.own = own
        self._workers: dict[str, tuple[int, dict[str, int]]] = {}
        self._finished_retries = 0

    def update(self, worker: str, retries: int, outstanding: dict[str, int]) -> None:
        self._workers[worker] = (retries, outstanding)

    def finish(self, worker: str) -> None:
        retries, _ = self._workers.pop(worker, (0, {}))
        self._finished_retries += retries

    @property
    def retry_count(self) -> int:
        workers = list(self._workers.values())  # updated from the loop thread: copy in one step
        return int(getattr(self.own, "retry_count", 0)) + self._finished_retries + sum(r for r, _ in workers)

    def outstanding(self) -> dict[str, int]:
        total: dict[str, int] = dict(self.own.outstanding()) if hasattr(self.own, "outstanding") else {}
        for _, calls in list(self._workers.values()):
            for url, n in calls.items():
                total[url] = total.get(url, 0) + n
        return total
