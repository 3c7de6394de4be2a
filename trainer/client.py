"""`HttpTrainerClient`: the `TrainingJobRunner` protocol over the trainer service (`trainer/service.py`).

Paths in the config must be valid on the service's side (compose shares the data and adapters volumes).
Submitting is safe to retry: the service returns the active job for an output dir instead of a duplicate.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from selfspec.clients.openai_compat import error_for_status, translate_error
from selfspec.errors import BackendOverloaded, BackendTimeout, BackendUnavailable
from selfspec.types import AdapterRef
from trainer.config import TrainConfig
from trainer.jobs import JobNotFound, wait_for_job
from trainer.protocol import JobCreated, JobStatus

log = logging.getLogger(__name__)

RETRYABLE = (BackendUnavailable, BackendTimeout, BackendOverloaded)


class HttpTrainerClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers=headers, transport=transport,
        )
        self._retries, self._backoff = retries, backoff_s

    async def __aenter__(self) -> HttpTrainerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise translate_error(exc, self.base_url) from exc
        if response.status_code == 404 and path.startswith("/jobs/"):
            raise JobNotFound(f"no training job {path.removeprefix('/jobs/')!r} at {self.base_url}")
        if response.status_code >= 400:
            raise error_for_status(response, self.base_url)
        return response

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential_jitter(initial=self._backoff, max=max(self._backoff * 16, 0.01)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(method, path, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def submit(self, config: TrainConfig) -> str:
        response = await self._request("POST", "/jobs", config.to_dict())
        return JobCreated.model_validate(response.json()).id

    async def status(self, job_id: str) -> JobStatus:
        response = await self._request("GET", f"/jobs/{job_id}")
        return JobStatus.model_validate(response.json())

    async def wait(self, job_id: str, poll_s: float = 5.0, *, timeout_s: float | None = None) -> AdapterRef:
        return await wait_for_job(self, job_id, poll_s=poll_s, timeout_s=timeout_s)

    async def health(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
