"""Wire models of the training job API (vLLM style: protocol models apart from serving logic).

`JobStatus` is what `GET /jobs/{id}` returns and what every `TrainingJobRunner` reports.
`JobResult` is the file a trainer process leaves behind (`result.json`) when it ends on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from selfspec.types import AdapterRef
from trainer.progress import TrainProgress

JobState = Literal["queued", "running", "succeeded", "failed"]
FINISHED: tuple[JobState, ...] = ("succeeded", "failed")


class JobStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    adapter: AdapterRef | None = None
    error: str | None = None
    progress: TrainProgress | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


class JobCreated(BaseModel):
    id: str
    state: JobState


class JobResult(BaseModel):
    """Written atomically by `python -m trainer.train --result-file` as its last act."""

    state: Literal["succeeded", "failed"]
    adapter: AdapterRef | None = None
    error: str | None = None
