"""The run store's rows as read back (frozen models), and the conversions between rows and types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from selfspec.errors import SelfSpecError
from selfspec.types import AdapterRef, DocRef, Sample


def utc_now() -> datetime:
    return datetime.now(UTC)


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """A JSON column value: datetimes, paths and the like stored as their text."""
    return dict(json.loads(json.dumps(data, default=str)))


class RunIdConflict(SelfSpecError):
    """A new run's id is already taken."""


class _Record(BaseModel):
    """A row of the store as read back (datetimes as the database hands them: SQLite's are naive UTC)."""

    model_config = ConfigDict(frozen=True)


# A run in one of these states has ended: nothing drives it until a request resumes it.
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class RunRecord(_Record):
    id: str
    name: str
    config: dict[str, Any]  # the run's config as submitted (`RunConfig.model_dump(mode="json")`)
    status: str  # pending|running|paused|awaiting_review|completed|failed|cancelled
    phase: str
    round: int
    reason: str
    created_at: datetime
    updated_at: datetime


class AdapterRecord(_Record):
    name: str
    run_id: str
    round: int
    path: str
    manifest: dict[str, Any]  # the trainer's `AdapterRef`, as JSON
    created_at: datetime

    def ref(self) -> AdapterRef:
        return AdapterRef.model_validate({**self.manifest, "name": self.name, "path": self.path, "round": self.round})


class EvaluationRecord(_Record):
    id: str
    run_id: str | None
    status: str  # pending|running|completed|failed
    request: dict[str, Any]  # the EvaluationRequest, as JSON
    results: list[dict[str, Any]]  # EvalResult.model_dump(mode="json") each
    report_path: str
    error: str
    created_at: datetime


class SampleReview(_Record):
    """A sample as a reviewer acts on it: its status and generated response, and the review's latest state
    (`decision`, `edited`, `updated_*` are None while nobody has reviewed it)."""

    sample_id: str
    round: int
    status: str
    response: str  # as generated
    decision: str | None  # rejected | restored | None: the gates decide
    edited: str | None  # the edited response; None: the generated one
    updated_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ReviewChange:
    """What a review action makes of a sample's review state, and its `review` event's data."""

    decision: str | None
    edited: str | None
    event: dict[str, Any]


def sample_from_row(row: Mapping[Any, Any], *, response: str | None = None) -> Sample:
    """A `samples` row as a `Sample`; `response` replaces the generated one (a reviewer's edit)."""
    return Sample(
        id=row["id"], run_id=row["run_id"], round=row["round"], instruction_id=row["instruction_id"],
        instruction=row["instruction"], input=row["input"],
        response=response if response is not None else row["response"],
        retrieved=tuple(DocRef(**d) for d in row["retrieved"]), model=row["model"],
        prompt_name=row["prompt_name"], prompt_hash=row["prompt_hash"], created_at=row["created_at"],
    )
