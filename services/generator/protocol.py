"""Request/response models of the OpenAI-compatible API, shaped exactly like vLLM's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1, le=32768)


class ChatMessageIn(_Request):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)


class LoadLoRAAdapterRequest(_Request):
    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(_Request):
    lora_name: str
    lora_int_id: int | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


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
