"""Request/response models of the OpenAI-compatible API, shaped exactly like vLLM's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_LOGPROBS = 20  # vLLM's default --max-logprobs
LOGPROB_FLOOR = -9999.0  # vLLM clamps -inf to this JSON-safe value

# Bounds on one request (vLLM has none of these; the embedded server runs on one CPU worker thread).
MAX_BODY_BYTES = 8 * 1024 * 1024  # larger bodies are a 413
MAX_ROWS = 256  # prompts x n of one request: each is a queued generation (the engine queues 512 by default)
MAX_SCORED_ROWS = 64  # prompts x n of an echo / logprobs request, scored in one forward pass
MAX_CHOICES = 64  # options of a choice constraint: one scoring row each
MAX_STOP = 32  # stop strings: each is looked for in every row at every step
MAX_MESSAGES = 1024  # messages of one chat request


class _Request(BaseModel):
    # Unknown OpenAI fields (logprobs, user, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="ignore")


class _SamplingRequest(_Request):
    """Sampling fields shared by /v1/completions and /v1/chat/completions (vLLM's defaults)."""

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    ignore_eos: bool = False
    # Constrained decoding: vLLM >= 0.12 takes `structured_outputs`, older vLLM the `guided_*` fields.
    # Only `choice` is implemented here; the others are refused (400), never silently ignored.
    structured_outputs: dict[str, Any] | None = None
    guided_choice: list[str] | None = None
    guided_regex: str | None = None
    guided_json: Any = None
    guided_grammar: str | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(stop)}")
        return stop

    def choice_constraint(self) -> list[str] | None:
        """The choices to constrain the output to, or None; ValueError names an unsupported constraint."""
        structured = {k: v for k, v in (self.structured_outputs or {}).items() if v is not None}
        unsupported = [f"structured_outputs.{k}" for k in structured if k != "choice"]
        unsupported += [f"guided_{k}" for k in ("regex", "json", "grammar") if getattr(self, f"guided_{k}") is not None]
        if self.response_format and self.response_format.get("type", "text") != "text":
            unsupported.append(f"response_format {self.response_format.get('type')!r}")
        if unsupported:
            raise ValueError(f"{', '.join(unsupported)}: not supported by the embedded server (only choice)")
        choices = structured.get("choice", self.guided_choice)
        if choices is None:
            return None
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise ValueError("choice: expected a non-empty list of non-empty strings")
        if len(choices) > MAX_CHOICES:
            raise ValueError(f"choice: at most {MAX_CHOICES} choices, got {len(choices)}")
        return list(dict.fromkeys(choices))


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0, le=32768)  # 0 only with echo: score the prompt, generate nothing
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)
    prompt_logprobs: int | None = Field(None, ge=0)  # vLLM's extra parameter


class ChatMessageIn(_Request):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    logprobs: bool = False
    top_logprobs: int | None = None


class LoadLoRAAdapterRequest(_Request):
    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(_Request):
    lora_name: str
    lora_int_id: int | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "selfspec"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(s for s in stop if s)


def completion_logprobs(
    token_ids: Sequence[int],
    logprobs: Sequence[float | None],
    top: Sequence[Sequence[tuple[int, float]] | None],
    *,
    k: int,
    decode: Callable[[int], str],
) -> dict[str, list[Any]]:
    """vLLM's `choices[i].logprobs` (`_create_completion_logprobs`): per token its text (each token
    decoded alone), its log-probability (None where there is none: the first prompt token), a dict of
    the token itself followed by the top k, and the offset of the token in the concatenated texts."""
    out: dict[str, list[Any]] = {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
    last_len = 0
    for i, token in enumerate(token_ids):
        text = decode(token)
        value = logprobs[i]
        if value is None:
            out["token_logprobs"].append(None)
            out["top_logprobs"].append(None)
        else:
            by_id = {token: value}
            for alt, alt_value in (top[i] or ())[:k]:
                by_id.setdefault(alt, alt_value)
            out["token_logprobs"].append(max(value, LOGPROB_FLOOR))
            out["top_logprobs"].append({decode(t): max(v, LOGPROB_FLOOR) for t, v in by_id.items()})
        out["text_offset"].append(0 if i == 0 else out["text_offset"][-1] + last_len)
        out["tokens"].append(text)
        last_len = len(text)
    return out


def prompt_logprobs_field(
    token_ids: Sequence[int],
    logprobs: Sequence[float | None],
    ranks: Sequence[int | None],
    top: Sequence[Sequence[tuple[int, float]] | None],
    *,
    k: int,
    decode: Callable[[int], str],
) -> list[dict[str, dict[str, Any]] | None]:
    """vLLM's `choices[i].prompt_logprobs`: per prompt token None (the first) or {token id: {logprob,
    rank, decoded_token}} for the token itself, then the top k (ranks 1..k)."""
    out: list[dict[str, dict[str, Any]] | None] = []
    for i, token in enumerate(token_ids):
        value = logprobs[i]
        if value is None:
            out.append(None)
            continue
        entry = {str(token): {"logprob": max(value, LOGPROB_FLOOR), "rank": ranks[i], "decoded_token": decode(token)}}
        for rank, (alt, alt_value) in enumerate((top[i] or ())[:k], start=1):
            entry.setdefault(str(alt), {"logprob": max(alt_value, LOGPROB_FLOOR), "rank": rank,
                                        "decoded_token": decode(alt)})
        out.append(entry)
    return out
