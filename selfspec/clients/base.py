"""What every selfspec service client shares, written once (httpx's `BaseClient` is the model).

    ServiceClient                 an httpx.AsyncClient per base URL (pool, limits, timeout, token header),
    │                             the status -> exception mapping, the retry policy, health(), aclose()
    ├── OpenAICompatGenerator     selfspec/clients/openai_compat.py
    ├── HttpRetriever             selfspec/clients/retriever_http.py
    └── HttpTrainerClient         trainer/client.py

A client adds only its endpoint methods, each one `await self._request(method, path, ...)`.
Several base URLs are replicas of one service: each attempt goes to the replica with the fewest calls
in flight, one that just failed sits out a short cooldown, and a retry may land on another replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypedDict, Unpack

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from selfspec.clients.pool import failure_name, pooled_transport, timed_out
from selfspec.errors import (
    RETRYABLE,
    BackendError,
    BackendOverloaded,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    SelfSpecError,
)
from selfspec.urls import redact_url

log = logging.getLogger(__name__)

COOLDOWN_S = 2.0  # a replica that failed is skipped this long while others are healthy
HEALTH_TIMEOUT_S = 5.0


def translate_error(exc: httpx.HTTPError, backend: str) -> BackendError:
    """The one place an httpx failure (no HTTP answer at all) becomes a selfspec error."""
    if timed_out(exc):
        return BackendTimeout(f"timed out ({type(exc).__name__})", backend=backend)
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailable(f"unreachable ({failure_name(exc)})", backend=backend)
    return BackendError(str(exc), backend=backend)


def error_for_status(status: int, detail: str, backend: str) -> BackendResponseError:
    """The one status -> exception mapping of every client.

    429 and every 5xx (500, 502, 503, 504, ...) are `BackendOverloaded`, retried; any other status is a
    `BackendResponseError`, not retried. Why one class for all of them: from the client's side they mean
    the same thing, "this call may succeed later or on another replica" (a busy vLLM or a full queue
    answers 429/503, a restarting engine 500, a proxy whose upstream is down or slow 502/504, and our
    retriever service reports Elasticsearch trouble as 502-504), and the client cannot tell them apart
    any better than that. Keeping them `BackendResponseError`s keeps the status and the service's message
    for errors and evaluation records; `BackendUnavailable` / `BackendTimeout` stay reserved for calls that
    got no HTTP answer at all, so an error's class also says whether the service was reached.
    """
    if status == 429 or status >= 500:
        return BackendOverloaded(status, detail, backend=backend)
    return BackendResponseError(status, detail, backend=backend)


def error_detail(response: httpx.Response) -> str:
    """The service's own message: OpenAI/vLLM `{"error": {"message": ...}}`, FastAPI `{"detail": ...}`,
    else the raw body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text
    if isinstance(payload, dict):
        if isinstance(payload.get("error"), dict) and "message" in payload["error"]:
            return str(payload["error"]["message"])
        if "detail" in payload:
            detail = payload["detail"]
            return detail if isinstance(detail, str) else str(detail)
    return response.text


def bearer_header(api_key: str | None) -> dict[str, str]:
    """The token header every selfspec service checks (`selfspec.auth`); none without a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass
class Endpoint:
    """One base URL of a service and its connection pool."""

    url: str
    client: httpx.AsyncClient
    outstanding: int = 0
    failed_at: float = field(default=-1e9)

    def cooling(self, now: float) -> bool:
        return now - self.failed_at < COOLDOWN_S

    @property
    def label(self) -> str:
        """The URL as errors, logs and /metrics show it: without a password."""
        return redact_url(self.url)


class ClientOptions(TypedDict, total=False):
    """What every client takes as keywords; a client's `defaults` and then the caller's override these."""

    timeout_s: float
    connect_timeout_s: float  # capped at timeout_s
    retries: int  # attempts after the first
    backoff_s: float  # first retry's wait, doubling (with jitter) up to 16x
    in_flight: int  # calls in flight and pooled connections per base URL
    api_key: str | None
    transport: httpx.AsyncBaseTransport | None  # tests inject httpx.MockTransport / ASGITransport


OPTIONS = ClientOptions(timeout_s=30.0, connect_timeout_s=5.0, retries=4, backoff_s=0.5, in_flight=8, api_key=None,
                        transport=None)


class ServiceClient:
    """Bounded in-flight calls, bounded retries with jittered backoff, typed errors; see the module doc."""

    service: ClassVar[str] = "service"  # names the service in logs and errors
    defaults: ClassVar[ClientOptions] = ClientOptions()

    def __init__(self, base_urls: str | Sequence[str], **options: Unpack[ClientOptions]) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError(f"at least one {self.service} URL is required")
        o: ClientOptions = {**OPTIONS, **self.defaults, **options}
        timeout_s, in_flight = o["timeout_s"], o["in_flight"]
        timeout = httpx.Timeout(timeout_s, connect=min(o["connect_timeout_s"], timeout_s))
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        self._endpoints = [
            Endpoint(url.rstrip("/"), httpx.AsyncClient(
                base_url=url.rstrip("/"), timeout=timeout, limits=limits, headers=bearer_header(o["api_key"]),
                transport=o["transport"] or pooled_transport(in_flight),
            ))
            for url in urls
        ]
        self._slots = asyncio.Semaphore(in_flight)
        self._retries, self._backoff = o["retries"], o["backoff_s"]
        self.retry_count = 0  # observable: retries performed so far

    @property
    def urls(self) -> list[str]:
        return [endpoint.url for endpoint in self._endpoints]

    def outstanding(self) -> dict[str, int]:
        """Calls in flight per base URL, keyed by its redacted URL (a /metrics label)."""
        return {endpoint.label: endpoint.outstanding for endpoint in self._endpoints}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.client.aclose()

    async def health(self) -> bool:
        """True when at least one base URL answers /health with 200."""
        for endpoint in self._endpoints:
            try:
                response = await endpoint.client.get("/health", timeout=HEALTH_TIMEOUT_S)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                return True
        return False

    # ---- one call ----

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call with bounded retries on `RETRYABLE`; each attempt may go to another replica."""
        async with self._slots:
            async for attempt in self._retrying():
                with attempt:
                    return await self._send(self._pick(), method, path, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, endpoint: Endpoint, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt on one base URL: httpx failures and error statuses become selfspec errors."""
        endpoint.outstanding += 1
        try:
            response = await endpoint.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            endpoint.failed_at = time.monotonic()
            raise translate_error(exc, endpoint.url) from exc
        finally:
            endpoint.outstanding -= 1
        if response.status_code >= 400:
            err = self._error_for(response, path=path, backend=endpoint.url)
            if isinstance(err, RETRYABLE):
                endpoint.failed_at = time.monotonic()
            raise err
        return response

    def _error_for(self, response: httpx.Response, *, path: str, backend: str) -> SelfSpecError:
        """An error answer as an exception; a client may name one more precisely (the trainer's unknown job)."""
        return error_for_status(response.status_code, error_detail(response), backend)

    def _pick(self) -> Endpoint:
        now = time.monotonic()
        healthy = [e for e in self._endpoints if not e.cooling(now)] or self._endpoints
        return min(healthy, key=lambda e: (e.outstanding, e.failed_at))

    def _retrying(self) -> AsyncRetrying:
        """The retry policy: `retries` more attempts after the first, exponential backoff with jitter."""
        return AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential_jitter(initial=self._backoff, max=max(self._backoff * 16, 0.01)),
            reraise=True,
            before_sleep=self._note_retry,
        )

    def _note_retry(self, state: RetryCallState) -> None:
        self.retry_count += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s call failed, retry %d: %s", self.service, state.attempt_number, error)
