"""Short-lived tickets for the event stream, so the bearer token never travels in a URL.

EventSource cannot send headers, and a URL's query string lands in access logs, proxies and browser
history. The dashboard therefore trades its bearer token (in a header) for a ticket:

    POST /v1/runs/{id}/events/ticket      (Authorization: Bearer ...)  -> {"ticket": ..., "expires_in": 60}
    GET  /v1/runs/{id}/events?ticket=...                               -> the SSE stream

A ticket opens streams of that one run only, until it expires (reconnects within its lifetime reuse it;
after that the dashboard asks for a new one). A leaked ticket is worth one run's events for a minute.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict

MAX_LIVE_TICKETS = 10_000  # the oldest are dropped beyond this: issuing cannot grow memory without bound


class StreamTickets:
    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._now = time.monotonic
        self._live: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, run_id: str) -> str:
        self._prune()
        ticket = secrets.token_urlsafe(32)
        self._live[ticket] = (run_id, self._now() + self.ttl_s)
        while len(self._live) > MAX_LIVE_TICKETS:
            self._live.popitem(last=False)
        return ticket

    def admits(self, ticket: str | None, run_id: str) -> bool:
        """True when `ticket` was issued for `run_id` and has not expired."""
        if not ticket:
            return False
        entry = self._live.get(ticket)
        if entry is None:
            return False
        wanted, expires = entry
        if self._now() >= expires:
            del self._live[ticket]
            return False
        return hmac.compare_digest(wanted.encode(), run_id.encode())

    def _prune(self) -> None:
        now = self._now()
        while self._live:
            ticket, (_, expires) = next(iter(self._live.items()))
            if expires > now:
                break
            del self._live[ticket]
