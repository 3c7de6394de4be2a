"""`HttpTrainerClient`: the `TrainingJobRunner` protocol over the trainer service (`trainer/service.py`).

Paths in the config must be valid on the service's side (compose shares the data and adapters volumes).
Submitting is safe to retry: the service returns the active job for an output dir instead of a duplicate.
"""

from __future__ import annotations

import httpx

from selfspec.clients.base import ClientOptions, ServiceClient
from selfspec.errors import SelfSpecError
from selfspec.types import AdapterRef
from selfspec.urls import redact_url
from trainer.config import TrainConfig
from trainer.jobs import JobNotFound, wait_for_job
from trainer.protocol import JobCreated, JobStatus


class HttpTrainerClient(ServiceClient):
    service = "trainer"
    defaults = ClientOptions(retries=3, in_flight=4)

    def _error_for(self, response: httpx.Response, *, path: str, backend: str) -> SelfSpecError:
        if response.status_code == 404 and path.startswith("/jobs/"):
            return JobNotFound(f"no training job {path.removeprefix('/jobs/')!r} at {redact_url(backend)}")
        return super()._error_for(response, path=path, backend=backend)

    async def submit(self, config: TrainConfig) -> str:
        response = await self._request("POST", "/jobs", json=config.to_dict())
        return JobCreated.model_validate(response.json()).id

    async def status(self, job_id: str) -> JobStatus:
        response = await self._request("GET", f"/jobs/{job_id}")
        return JobStatus.model_validate(response.json())

    async def wait(self, job_id: str, poll_s: float = 5.0, *, timeout_s: float | None = None) -> AdapterRef:
        return await wait_for_job(self, job_id, poll_s=poll_s, timeout_s=timeout_s)
