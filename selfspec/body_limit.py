"""Request body limit as pure ASGI middleware (413), shared by the orchestrator and the embedded generator.

Pure ASGI rather than `BaseHTTPMiddleware` so streamed responses (SSE, dataset downloads) pass
through untouched and the limit applies while the body is read, not after it is buffered.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing lets it through as 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body exceeds {limit} bytes")


def detail_body(limit: int) -> object:
    """FastAPI's error shape."""
    return {"detail": f"request body exceeds {limit} bytes"}


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: by Content-Length up front, or while a chunked body streams in.
    `error_body(limit)` is the JSON of the 413 (FastAPI's `detail` by default)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, error_body: Callable[[int], object] = detail_body) -> None:
        self.app, self.max_bytes, self.error_body = app, max_bytes, error_body

    async def _send_413(self, send: Send) -> None:
        body = json.dumps(self.error_body(self.max_bytes)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._send_413(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._send_413(send)
