"""Pure ASGI middleware: request accounting for /metrics, the cross-site guard on state changes, and the
token check before a request body is read (the body limit is selfspec.body_limit; the Host allowlist,
shared with the other services, is selfspec.hosts).

Pure ASGI rather than `BaseHTTPMiddleware` so streamed responses (SSE, dataset downloads) pass
through untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.metrics import ApiMetrics
from selfspec.auth import BearerAuthMiddleware

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The content types a cross-site page may POST without a CORS preflight (an HTML form, `fetch` no-cors).
SIMPLE_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CrossSiteGuardMiddleware:
    """No state change from another site: a POST (PUT, PATCH, DELETE) whose `Origin` is neither this
    server nor an allowed CORS origin is a 403, and one whose body is a form or plain text (what a page
    can send cross-site without a preflight) is a 415. Browsers send `Origin` on every POST; clients that
    are not browsers send none, or JSON, and pass. Without a token the API trusts loopback, so this and
    the Host allowlist are what keep a web page the user visits from driving it."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and not self._same_or_allowed(origin, headers.get("host", "")):
            await _refuse(send, 403, f"cross-site request refused: Origin {origin!r} is neither this server nor "
                                     "one of SELFSPEC_API_CORS_ORIGINS")
            return
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in SIMPLE_CONTENT_TYPES:
            await _refuse(send, 415, f"Content-Type {content_type!r} is not accepted: send application/json "
                                     "(or no body)")
            return
        await self.app(scope, receive, send)

    def _same_or_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins or "*" in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host.lower()


def _api_path(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


class TokenFirstMiddleware:
    """With a token set, a request that carries a body to the API (any method but GET, HEAD, OPTIONS under
    /v1) is refused with 401 before its body is read. FastAPI parses a JSON body before it runs a route's
    dependencies, so the `require_token` dependency alone answered an anonymous malformed body with a 422:
    a caller without the token learnt what the endpoint expects. GET routes keep their dependency (the
    event stream also admits a ticket there)."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.guard = BearerAuthMiddleware(app, tokens=[token], guarded=_api_path) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.guard is None or scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        await self.guard(scope, receive, send)


# A label value per request method the client invents would grow /metrics without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    """Requests in flight, and requests by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, tracking_send)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
