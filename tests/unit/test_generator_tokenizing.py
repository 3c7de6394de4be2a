"""The embedded generator tokenizes off the event loop: a slow (large) prompt does not hold up other requests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from services.generator.app import create_app
from services.generator.engine import GenerationResult

WAIT_S = 10.0


class _SlowTokenizerEngine:
    """Tokenizing blocks (as a multi-megabyte prompt would) until the test releases it."""

    served_name, created, model_path, adapters, max_model_len = "tiny", 0, "/models/tiny", {}, 64

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.tokenizing = False

    def knows_model(self, name: str) -> bool:
        return name == self.served_name

    def tokenize_prompt(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        if prompt != "slow":
            return [1] * len(prompt.split())
        self.tokenizing = True
        self.started.set()
        try:
            assert self.release.wait(WAIT_S), "the test never released the tokenizer"
        finally:
            self.tokenizing = False
        return [1]

    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize_prompt(messages[-1]["content"])

    async def generate(self, ids: list[int], **kwargs: Any) -> GenerationResult:
        return GenerationResult("done", "stop", len(ids), 1)

    def close(self) -> None:
        pass


async def _wait_until(event: threading.Event) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("tokenization never started")


async def test_generator_answers_other_requests_while_a_prompt_is_tokenized() -> None:
    bodies = [("/v1/completions", {"model": "tiny", "prompt": "slow", "max_tokens": 1}),
              ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "slow"}]})]
    for path, body in bodies:
        engine = _SlowTokenizerEngine()
        app = create_app(engine)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            slow = asyncio.create_task(http.post(path, json=body))
            try:
                await _wait_until(engine.started)
                health = await http.get("/health")
                other = await http.post("/v1/completions", json={"model": "tiny", "prompt": "fast one", "max_tokens": 1})
                assert engine.tokenizing, "the other requests waited for the slow tokenization"
                assert health.status_code == 200 and other.status_code == 200, other.text
            finally:
                engine.release.set()
            assert (await slow).status_code == 200
