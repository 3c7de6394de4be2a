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

from sse_starlette import ServerSentEvent

from orchestrator.app.queries import TERMINAL, as_utc
from orchestrator.store import RunStore

BATCH = 500


def parse_last_event_id(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 0
    return int(value.strip())


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
            status = (await asyncio.to_thread(store.get_run, run_id))["status"]
            if status in TERMINAL:
                # The final status event commits with the status itself: one more look and we are done.
                tail = await asyncio.to_thread(store.events_after, run_id, last, BATCH)
                if not tail:
                    yield ServerSentEvent(data=json.dumps({"status": status}), event="end")
                    return
                continue
        await asyncio.sleep(poll_s)
