"""The API's loop thread: a dedicated thread with its own event loop for runs, evaluations and their clients.

Why: a run does CPU work between awaits (filter decisions, exports), and on the HTTP event loop that
work would stall every request. With runs on their own loop, the HTTP loop only waits for the GIL's
switch interval, so reads stay fast while a run computes. Service clients (httpx pools, retriever,
trainer jobs) are opened and used on this loop only; the API reaches them through `call()`.

Does it still pay now that runs live in worker processes? Measured (bench/bench_loop_thread.py: 20
clients polling while a 2000-sample run and a 20000-answer evaluation execute, fake generator,
thread / inline, means of 2-3 phases a mode, on the 2-core machine):
- with CPU to spare: p50 1.01, p99 0.87, evaluation answers/s 1.00, run samples/s 0.96: no difference;
- with the cores already busy (another job, load 5.4): p99 0.51, evaluation answers/s 1.13, run
  samples/s 1.41. The HTTP threads run niced below this thread (`read_nice`), and the run workers it
  starts keep its priority: a child of a niced thread would inherit the nice value, and an unprivileged
  process cannot raise a child's priority back (the bench does not separate the thread from the
  nice it allows: without the thread there is no nice). So it stays.
`LoopThread(own_thread=False)` keeps the interface but runs everything on the caller's loop (the HTTP
loop): `SELFSPEC_API_LOOP_THREAD=false`, the bench's other arm.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "selfspec-loop-thread", *, own_thread: bool = True) -> None:
        self.own_thread = own_thread
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._release: asyncio.Event | None = None
        self._holder: concurrent.futures.Future[None] | None = None
        self._inline_stack = AsyncExitStack()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> LoopThread:
        if self.own_thread:
            self._thread.start()
        else:
            self.loop.close()  # unused: everything runs on the caller's loop
        return self

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this thread's loop and await its result from another loop."""
        if not self.own_thread:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    async def hold(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter `context` in one task on this loop, kept open until `release()`; returns its value."""
        if not self.own_thread:
            return await self._inline_stack.enter_async_context(context)
        entered: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._release = asyncio.Event()
        release = self._release

        async def keep_open() -> None:
            try:
                async with context as value:
                    entered.set_result(value)
                    await release.wait()
            except BaseException as err:
                if not entered.done():
                    entered.set_exception(err)
                    return
                raise

        self._holder = self.submit(keep_open())
        return await asyncio.wrap_future(entered)

    async def release(self) -> None:
        """Leave the context entered by `hold()` (in the task that entered it)."""
        if not self.own_thread:
            await self._inline_stack.aclose()
            return
        if self._release is not None and self._holder is not None:
            self.loop.call_soon_threadsafe(self._release.set)
            await asyncio.wrap_future(self._holder)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=timeout_s)
