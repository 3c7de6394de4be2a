"""A tiny thread-safe TTL cache: many dashboards polling one run's progress cost one computation per TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic, max_items: int = 256) -> None:
        self.ttl_s, self._clock, self.max_items = ttl_s, clock, max_items
        self._items: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], T]) -> T:
        if self.ttl_s <= 0:
            return compute()
        with self._lock:  # held while computing: concurrent readers of a stale entry wait for one result
            hit = self._items.get(key)
            now = self._clock()
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
            value = compute()
            if len(self._items) >= self.max_items:
                self._items.clear()
            self._items[key] = (self._clock(), value)
            return value
