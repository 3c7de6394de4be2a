"""Server-sent events of a run, read from the store's events table.

The SSE id is `events.id`, so a client reconnecting with `Last-Event-ID` continues exactly after the
last event it saw: nothing is missed and nothing repeats, even across API restarts. Once the run is
in a final state and no event is left, one `end` event (without an id) closes the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from orchestrator.api.queries import as_utc
from orchestrator.store import TERMINAL, RunStore
from selfspec.errors import SelfSpecError

BATCH = 500


class TooManyStreams(SelfSpecError):
    """A client already holds as many event streams as `SELFSPEC_API_SSE_MAX_STREAMS_PER_CLIENT` allows (429)."""


class StreamSlots:
    """Open event streams per client address, at most `per_client` each (used on the HTTP loop only)."""

    def __init__(self, *, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def take(self, client: str) -> None:
        held = self._open.get(client, 0)
        if held >= self.per_client:
            raise TooManyStreams(f"{held} event streams are open from {client}, the most one client may hold "
                                 "(SELFSPEC_API_SSE_MAX_STREAMS_PER_CLIENT); close one first")
        self._open[client] = held + 1

    def give_back(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def held(self, client: str) -> int:
        return self._open.get(client, 0)


async def bounded_stream(events: AsyncIterator[ServerSentEvent], *,
                         lifetime_s: float) -> AsyncIterator[ServerSentEvent]:
    """`events` until they end or `lifetime_s` has passed; then the stream just closes, and EventSource
    reconnects from its Last-Event-ID (its credential checked again)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime_s
    while (remaining := deadline - loop.time()) > 0:
        try:
            event = await asyncio.wait_for(anext(events), remaining)
        except (StopAsyncIteration, TimeoutError):
            return
        yield event


class HeldStreamResponse(EventSourceResponse):
    """An event stream that gives its client's slot back when it ends, however it ends (completed, timed
    out, or the client gone, even before the first event)."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], *, release: Callable[[], None],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


MAX_EVENT_ID = 2**63 - 1  # events.id is a SQLite INTEGER


def parse_last_event_id(value: str | None) -> int:
    """The id a reconnecting client last saw; anything but digits is 0 (from the start), and an id past
    the largest possible one means nothing is left to send."""
    if value is None or not value.strip().isdigit():
        return 0
    return min(int(value.strip()), MAX_EVENT_ID)


def to_sse(row: dict[str, Any]) -> ServerSentEvent:
    payload = {"id": row["id"], "run_id": row["run_id"], "ts": as_utc(row["ts"]).isoformat(), "type": row["type"],
               "data": row["data"]}
    return ServerSentEvent(data=json.dumps(payload), event=row["type"], id=str(row["id"]))


async def run_events(store: RunStore, run_id: str, *, after: int, poll_s: float,
                     is_active: Callable[[str], bool]) -> AsyncIterator[ServerSentEvent]:
    last = after
    while True:
        batch = await asyncio.to_thread(store.events_after, run_id, last, BATCH)
        for row in batch:
            last = row["id"]
            yield to_sse(row)
        if len(batch) == BATCH:
            continue
        if not batch and not is_active(run_id):
            status = (await asyncio.to_thread(store.get_run, run_id)).status
            if status in TERMINAL:
                # The final status event commits with the status itself: one more look and we are done.
                tail = await asyncio.to_thread(store.events_after, run_id, last, BATCH)
                if not tail:
                    yield ServerSentEvent(data=json.dumps({"status": status}), event="end")
                    return
                continue
        await asyncio.sleep(poll_s)
