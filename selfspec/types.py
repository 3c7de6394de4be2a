"""The whole data model, defined once.

SeedTask -> Instruction -> Sample -> SFTRecord -> AdapterRef -> EvalResult.
Every object carries its parents' ids; JSONL on disk is `model_dump_json()` per line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A served model's name (base or adapter) and a run id, as requests may name them.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeedTask(_Frozen):
    """A human-written task: what the generator imitates and the response prompt demonstrates."""

    id: str = Field(min_length=1, max_length=128)
    domain: str = Field(min_length=1)
    task: str = Field(min_length=1)
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str = Field(min_length=1)

    @field_validator("instruction", "output")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Document(_Frozen):
    """A corpus passage."""

    id: str = Field(min_length=1, max_length=512)
    title: str = ""
    text: str = Field(min_length=1)


class RetrievedDoc(_Frozen):
    id: str
    score: float
    title: str = ""
    text: str = ""


class DocRef(_Frozen):
    """Provenance of a sample: which document, at what BM25 score."""

    doc_id: str
    score: float


Verdict = Literal[
    "kept",
    "surplus",
    "parse_failure",
    "list_debris",
    "too_short",
    "too_long",
    "blacklisted",
    "bad_start",
    "exact_duplicate",
    "near_duplicate",
]


class Instruction(_Frozen):
    id: str
    run_id: str
    round: int
    text: str
    input: str = ""
    seed_ids: tuple[str, ...] = ()
    prompt_name: str = "instructions"
    verdict: Verdict = "kept"
    reason: str = ""


class Sample(_Frozen):
    id: str
    run_id: str
    round: int
    instruction_id: str
    instruction: str
    input: str = ""
    response: str
    retrieved: tuple[DocRef, ...] = ()
    model: str
    prompt_name: str
    prompt_hash: str
    created_at: datetime = Field(default_factory=utcnow)


class ChatMessage(_Frozen):
    role: Literal["system", "user", "assistant"]
    content: str


class SFTRecord(_Frozen):
    """One training example: Alpaca fields plus the same content as chat messages."""

    id: str
    run_id: str
    round: int
    source_sample_id: str
    instruction: str
    input: str = ""
    output: str
    messages: tuple[ChatMessage, ...]


class AdapterRef(_Frozen):
    name: str
    path: str
    base_model: str
    round: int = 1
    run_id: str = ""
    dataset_sha256: str = ""
    steps: int = 0
    final_loss: float | None = None
    wall_s: float = 0.0
    quantization: str = "none"
    created_at: datetime = Field(default_factory=utcnow)


class EvalResult(_Frozen):
    model: str
    task: str
    metric: str
    value: float
    n: int
    shots: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    details_path: str = ""
    scoring: str = "generate"  # how answers were obtained: generate | choice | constrained (evaluation/README.md)
    # Set on a paired difference: `value` is model minus baseline on the same items, its CI from the
    # same bootstrap resamples of both.
    baseline: str | None = None


class SamplingParams(_Frozen):
    """What a generation call asks for; maps 1:1 onto OpenAI/vLLM request fields."""

    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None


class TokenLogprobs(_Frozen):
    """Log-probabilities of a prompt's tokens as a completions API echoes them (first one None)."""

    tokens: tuple[str, ...]
    token_logprobs: tuple[float | None, ...]


class Completion(_Frozen):
    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    backend: str = ""
