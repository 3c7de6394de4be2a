"""The embedded generator's request checks: prompts that leave no room in the context are vLLM's 400 (never
a short completion), and one request's body and lists are bounded. A fake engine stands in for the model:
none of these requests may reach it."""

from __future__ import annotations

from typing import Any

import httpx

from selfspec.errors import SelfSpecError
from services.generator.app import create_app
from services.generator.protocol import MAX_CHOICES, MAX_ROWS, MAX_SCORED_ROWS, MAX_STOP

CONTEXT = 8


class _Reached(SelfSpecError):
    """The request got to the engine (the app answers it 500)."""


class _FakeEngine:
    """One token per word; a request that reaches generation or scoring is answered 500."""

    served_name, created, model_path, adapters, max_model_len = "tiny", 0, "/models/tiny", {}, CONTEXT

    def knows_model(self, name: str) -> bool:
        return name == self.served_name

    def tokenize_prompt(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        return [1] * len(prompt.split())

    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return [1] * sum(len(m["content"].split()) for m in messages)

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise _Reached("reached the engine: generate")

    async def choose(self, *args: Any, **kwargs: Any) -> Any:
        raise _Reached("reached the engine: choose")

    async def prompt_logprobs(self, *args: Any, **kwargs: Any) -> Any:
        raise _Reached("reached the engine: prompt_logprobs")

    def close(self) -> None:
        pass


async def _post(path: str, body: dict[str, Any], **app_kwargs: Any) -> httpx.Response:
    app = create_app(_FakeEngine(), **app_kwargs)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        return await http.post(path, json=body)


def _words(count: int) -> str:
    return " ".join(["w"] * count)


async def test_generator_prompt_without_room_in_context_is_vllms_400() -> None:
    cases = [
        ("/v1/completions", {"model": "tiny", "prompt": _words(CONTEXT), "max_tokens": 4}, CONTEXT),
        ("/v1/completions", {"model": "tiny", "prompt": ["short", _words(CONTEXT + 3)]}, CONTEXT + 3),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": _words(CONTEXT + 1)}]},
         CONTEXT + 1),
        ("/v1/chat/completions", {"model": "tiny", "stream": True,
                                  "messages": [{"role": "user", "content": _words(CONTEXT)}]}, CONTEXT),
        ("/v1/completions", {"model": "tiny", "prompt": _words(CONTEXT), "structured_outputs": {"choice": ["a"]}},
         CONTEXT),
    ]
    for path, body, tokens in cases:
        response = await _post(path, body)
        assert response.status_code == 400, (path, body, response.text)
        error = response.json()["error"]
        assert error["type"] == "BadRequestError" and error["param"] == "input_tokens" and error["code"] == 400
        assert error["message"].startswith(f"This model's maximum context length is {CONTEXT} tokens. However, "
                                           f"your prompt contains {tokens} input tokens")


async def test_generator_scoring_alone_may_fill_the_context() -> None:
    echo = {"model": "tiny", "prompt": _words(CONTEXT), "echo": True, "max_tokens": 0, "logprobs": 1}
    with_room = await _post("/v1/completions", echo)
    assert with_room.status_code == 500 and "reached the engine" in with_room.text  # no context refusal
    over = await _post("/v1/completions", {**echo, "prompt": _words(CONTEXT + 1)})
    assert over.status_code == 400 and over.json()["error"]["param"] == "input_tokens"


async def test_generator_request_size_is_bounded() -> None:
    big = await _post("/v1/completions", {"model": "tiny", "prompt": "x" * 5000}, max_body_bytes=4096)
    assert big.status_code == 413
    assert big.json()["error"]["message"] == "request body exceeds 4096 bytes"

    refusals = [
        ({"prompt": ["p"] * (MAX_ROWS + 1)}, f"at most {MAX_ROWS} completions"),
        ({"prompt": ["p"] * (MAX_ROWS // 4 + 1), "n": 4}, f"got {4 * (MAX_ROWS // 4 + 1)}"),
        ({"prompt": ["p"] * (MAX_SCORED_ROWS + 1), "echo": True, "max_tokens": 0, "logprobs": 1},
         f"at most {MAX_SCORED_ROWS} completions with echo or logprobs"),
        ({"prompt": "p", "stop": ["s"] * (MAX_STOP + 1)}, f"at most {MAX_STOP} stop strings"),
        ({"prompt": "p", "structured_outputs": {"choice": [f"c{i}" for i in range(MAX_CHOICES + 1)]}},
         f"at most {MAX_CHOICES} choices"),
        ({"prompt": "p", "max_tokens": 10**6}, "max_tokens"),
    ]
    for extra, message in refusals:
        response = await _post("/v1/completions", {"model": "tiny", **extra})
        assert response.status_code == 400, (extra, response.text)
        assert message in response.json()["error"]["message"], response.json()
