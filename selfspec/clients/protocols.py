"""What the orchestrator, evaluation and CLI depend on: protocols, never concrete HTTP clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from selfspec.types import AdapterRef, Completion, Document, RetrievedDoc, SamplingParams, TokenLogprobs


@runtime_checkable
class Generator(Protocol):
    """An OpenAI-compatible text generator (vLLM or the embedded server)."""

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion: ...

    async def chat(self, messages: list[dict[str, str]], *, model: str, params: SamplingParams) -> Completion: ...

    async def list_models(self) -> list[str]: ...

    async def health(self) -> bool: ...


@runtime_checkable
class Scorer(Protocol):
    """A generator that can also score: prompt log-probabilities (echo) and constrained choice."""

    async def prompt_logprobs(self, prompts: Sequence[str], *, model: str) -> list[TokenLogprobs]: ...

    async def choose(self, prompt: str, choices: Sequence[str], *, model: str,
                     params: SamplingParams) -> Completion: ...


@runtime_checkable
class AdapterRegistry(Protocol):
    """Loads/unloads LoRA adapters by name on every generator replica."""

    async def load(self, adapter: AdapterRef) -> None: ...

    async def unload(self, name: str) -> None: ...

    async def list(self) -> list[str]: ...


@runtime_checkable
class Retriever(Protocol):
    """BM25 (or other) search over one named index."""

    async def search(self, query: str, k: int) -> list[RetrievedDoc]: ...

    async def add_documents(self, documents: list[Document]) -> int: ...

    async def count(self) -> int: ...
