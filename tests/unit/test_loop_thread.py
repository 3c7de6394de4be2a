"""The API's loop thread, and its inline stand-in (SELFSPEC_API_LOOP_THREAD=false): same interface."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from orchestrator.execution.loop_thread import LoopThread


@pytest.mark.parametrize("own_thread", [True, False])
async def test_loop_thread_calls_and_holds_a_context_until_released(own_thread: bool) -> None:
    loop_thread = LoopThread(own_thread=own_thread).start()
    caller = threading.get_ident()
    trail: list[str] = []

    @asynccontextmanager
    async def service() -> AsyncIterator[str]:
        trail.append("open")
        yield "client"
        trail.append("closed")

    async def where() -> int:
        return threading.get_ident()

    try:
        assert await loop_thread.hold(service()) == "client"
        assert (await loop_thread.call(where()) == caller) is not own_thread
        await asyncio.sleep(0.05)
        assert trail == ["open"]  # held open across calls
        await loop_thread.release()
        assert trail == ["open", "closed"]
    finally:
        loop_thread.stop()
