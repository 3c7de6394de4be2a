"""Request and response models of the orchestrator API (apart from the serving logic, vLLM-style)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator.execution.evaluation_jobs import EvaluationSpec


def _utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive (they were written in UTC): RFC 3339 needs the offset."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- runs ----

class RunCreated(BaseModel):
    id: str
    status: str
    url: str


class StreamTicket(BaseModel):
    ticket: str = Field(description="pass as ?ticket= to GET /v1/runs/{id}/events")
    expires_in: float = Field(description="seconds the ticket opens streams of this run")


class RunAction(BaseModel):
    id: str
    status: str
    phase: str
    active: bool


class RunSummary(BaseModel):
    id: str
    name: str
    status: str
    phase: str
    round: int
    reason: str
    active: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


class RoundProgress(BaseModel):
    target: int
    prompts: int
    instructions_kept: int
    instructions_total: int
    samples_ok: int
    samples_failed: int
    samples_gated: int = Field(0, description="responses dropped by a quality gate (their instructions replaced)")
    queue_depth: int
    verdicts: dict[str, int]
    gates: dict[str, int] = Field(default_factory=dict, description="gated responses by gate")


class RunDetail(RunSummary):
    target_per_round: int
    rounds_total: int
    rounds: dict[str, RoundProgress]
    filter_reasons: dict[str, int] = Field(description="instructions dropped, by filter verdict (all rounds)")
    gate_reasons: dict[str, int] = Field(default_factory=dict, description="responses dropped, by quality gate (all "
                                         "rounds); judge_unparsed_kept counts kept samples the judge gave no score")
    queue_depth: int = Field(description="kept instructions of the current round waiting for a response")
    samples_ok: int
    rate_per_s: float | None = Field(description="samples/s over the last minute (active runs)")
    eta_s: float | None = Field(description="seconds until the current round's synthesis reaches its target")
    config: dict[str, Any] = Field(description="the run's config without the server-owned sections (storage, "
                                   "services)")


class DocRefOut(BaseModel):
    doc_id: str
    score: float


class SampleOut(BaseModel):
    seq: int
    id: str
    round: int
    instruction_id: str
    instruction: str
    input: str
    response: str
    status: str
    error: str
    retrieved: list[DocRefOut]
    model: str
    prompt_hash: str
    created_at: UtcDatetime


class SamplePage(BaseModel):
    items: list[SampleOut]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page (samples.seq); stable "
                                    "while the run writes: new samples only ever come after it")
    has_more: bool


class Passage(BaseModel):
    doc_id: str
    score: float
    title: str = ""
    text: str = ""
    found: bool = Field(description="false when the retriever no longer returns this document's text")


class SamplePassages(BaseModel):
    sample_id: str
    passages: list[Passage]


DatasetFormat = Literal["sft", "alpaca", "messages"]
SampleStatus = Literal["ok", "failed", "gated", "all"]  # gated: any response gate (the gate is the row's status)


# ---- review ----

MAX_EDITED_RESPONSE_CHARS = 100_000  # generation stops at 8192 tokens: far below this
ReviewDecision = Literal["rejected", "restored"]


class ReviewNote(_Request):
    note: str = Field("", max_length=500, description="why; kept in the review event")


class ReviewEdit(ReviewNote):
    response: str = Field(min_length=1, max_length=MAX_EDITED_RESPONSE_CHARS,
                          description="the response the dataset gets; the generated one is kept as provenance "
                                      "(sending it back undoes the edit)")


class ReviewState(BaseModel):
    sample_id: str
    decision: ReviewDecision | None = Field(description="null: the gates decide (ok samples are in the dataset)")
    edited: bool
    included: bool = Field(description="the sample is in the round's exported dataset")
    reviewed_by: str | None
    reviewed_at: UtcDatetime | None
    changed: bool = Field(description="false when the action changed nothing (and recorded nothing)")


class ReviewSampleOut(BaseModel):
    id: str
    response: str = Field(description="what the dataset gets: the edited response, or the generated one")
    generated_response: str
    status: str = Field(description="ok, failed, or the response gate that dropped it")
    error: str = Field(description="why it was dropped (or a judge note)")
    retrieved: list[DocRefOut]
    model: str
    prompt_hash: str
    created_at: UtcDatetime


class ReviewItem(BaseModel):
    seq: int
    instruction_id: str
    round: int
    instruction: str
    input: str
    verdict: str = Field(description="the instruction filter's verdict: kept, or why it was dropped")
    reason: str
    sample: ReviewSampleOut | None = Field(description="null for a dropped instruction (never answered)")
    decision: ReviewDecision | None
    edited: bool
    included: bool
    reviewed_by: str | None
    reviewed_at: UtcDatetime | None


class ReviewPage(BaseModel):
    items: list[ReviewItem]
    next_cursor: int = Field(description="pass as ?cursor= for the next page (the instructions' order)")
    has_more: bool


class ReviewEvent(BaseModel):
    id: int = Field(description="the event's id in the run's event stream")
    ts: UtcDatetime
    action: str = Field(description="reject, restore, edit, approve, or export (a completed run's re-export)")
    by: str = Field(description="who: `local` without an API token, else the token's fingerprint")
    round: int | None = None
    sample_id: str | None = None
    note: str = ""
    before: str | None = Field(None, description="an edit's previous response")
    after: str | None = Field(None, description="an edit's new response")


# ---- adapters ----

class AdapterLoadRequest(_Request):
    path: str | None = Field(None, description="adapter dir under the adapters dir; default: the store's path")


class AdapterOut(BaseModel):
    name: str
    loaded: bool | None = Field(description="null when the generator cannot be asked")
    run_id: str | None = None
    round: int | None = None
    path: str | None = None
    base_model: str | None = None
    created_at: UtcDatetime | None = None


class AdapterAction(BaseModel):
    name: str
    loaded: bool
    path: str | None = None


# ---- evaluations ----

class EvaluationRequest(EvaluationSpec):
    model_config = ConfigDict(extra="forbid")


class EvaluationOut(BaseModel):
    id: str
    run_id: str | None
    status: str
    request: dict[str, Any]
    results: list[dict[str, Any]]
    report_available: bool
    progress: dict[str, int] | None = None
    error: str
    created_at: UtcDatetime


class EvaluationCreated(BaseModel):
    id: str
    status: str
    url: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    active_runs: int
