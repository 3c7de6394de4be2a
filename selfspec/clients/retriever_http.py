"""Typed async client for the retriever service (services/retriever), one index per client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

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
    BackendError,
    BackendOverloaded,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
)
from selfspec.types import Document, RetrievedDoc

log = logging.getLogger(__name__)

# BackendOverloaded covers 429/503; 502/504 arrive as BackendUnavailable. Writes are idempotent by
# id, so retrying a documents POST is as safe as retrying a search.
RETRYABLE = (BackendUnavailable, BackendTimeout, BackendOverloaded)
# Documents per POST: well under the service's body limit for passages of a few KB.
ADD_BATCH_SIZE = 1000


def translate_error(exc: httpx.HTTPError, base_url: str) -> BackendError:
    """The one place httpx failures and error statuses become selfspec errors."""
    if timed_out(exc):
        return BackendTimeout(f"timed out ({type(exc).__name__})", backend=base_url)
    if isinstance(exc, httpx.HTTPStatusError):
        status, body = exc.response.status_code, _detail(exc.response)
        if status in (429, 503):
            return BackendOverloaded(status, body, backend=base_url)
        if status in (502, 504):
            return BackendUnavailable(f"HTTP {status}: {body[:500]}", backend=base_url)
        return BackendResponseError(status, body, backend=base_url)
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailable(f"unreachable ({failure_name(exc)})", backend=base_url)
    return BackendError(str(exc), backend=base_url)


def _detail(response: httpx.Response) -> str:
    """The service's {"detail": ...} message when there is one, else the raw body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text
    if isinstance(payload, dict) and "detail" in payload:
        detail = payload["detail"]
        return detail if isinstance(detail, str) else str(detail)
    return response.text


class HttpRetriever:
    """The `Retriever` protocol over HTTP: bounded in-flight requests, bounded retries with backoff."""

    def __init__(
        self,
        base_url: str,
        index: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        in_flight: int = 8,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, self.index = base_url.rstrip("/"), index
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), headers=headers,
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
            transport=transport or pooled_transport(in_flight),
        )
        self._slots = asyncio.Semaphore(in_flight)
        self._retries, self._backoff = retries, backoff_s
        self.retry_count = 0  # observable: retries performed so far

    async def __aenter__(self) -> HttpRetriever:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self._slots:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(RETRYABLE),
                stop=stop_after_attempt(self._retries + 1),
                wait=wait_exponential_jitter(initial=self._backoff, max=max(self._backoff * 16, 0.01)),
                reraise=True,
                before_sleep=self._note_retry,
            )
            async for attempt in retrying:
                with attempt:
                    try:
                        response = await self._client.request(method, path, **kwargs)
                        response.raise_for_status()
                    except httpx.HTTPError as exc:
                        raise translate_error(exc, self.base_url) from exc
                    return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _note_retry(self, state: RetryCallState) -> None:
        self.retry_count += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning("retriever call failed, retry %d: %s", state.attempt_number, error)

    @property
    def _index_path(self) -> str:
        # Quoted so a stray "/" or ".." in a name reaches the service as a name it will refuse.
        return f"/indexes/{quote(self.index, safe='')}"

    async def ensure_index(self) -> bool:
        """Create the index if missing; True when it was created now."""
        response = await self._request("PUT", self._index_path)
        return response.status_code == 201

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        response = await self._request("POST", f"{self._index_path}/search", json={"query": query, "k": k})
        return [RetrievedDoc.model_validate(hit) for hit in response.json()["hits"]]

    async def add_documents(self, documents: list[Document]) -> int:
        """POST in batches; returns the documents indexed, as the service counts them."""
        indexed = 0
        for start in range(0, len(documents), ADD_BATCH_SIZE):
            batch = [doc.model_dump() for doc in documents[start:start + ADD_BATCH_SIZE]]
            response = await self._request("POST", f"{self._index_path}/documents", json=batch)
            indexed += int(response.json()["indexed"])
        return indexed

    async def count(self) -> int:
        response = await self._request("GET", self._index_path)
        return int(response.json()["count"])

    async def health(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
