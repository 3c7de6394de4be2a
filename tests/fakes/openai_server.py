"""A scripted, fast OpenAI-compatible server for tests: vLLM's shapes, fault injection, LoRA semantics.

Instruction-generation prompts (ending in 'N. Instruction:') get a numbered list of unique
instructions; anything else gets a short deterministic answer. `echo` + `logprobs` answers every
prompt of the list with vLLM's logprobs shape (whitespace-split "tokens", deterministic values per
model and token); a choice constraint (`structured_outputs.choice` / `guided_choice`) answers one of
the choices, picked deterministically per model and prompt. Faults: a fraction of 5xx answers,
stalls longer than the client timeout, or 'down' (every call 503s, /health too).
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

_TAIL = re.compile(r"(\d+)\. Instruction:\s*$")
VOCAB = [f"{a}{b}" for a in ("gene", "drug", "cell", "dose", "lung", "scan", "risk", "bone", "skin", "vein")
         for b in ("alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "zeta", "eta")]


@dataclass
class FakeState:
    served_name: str = "fake-base"
    error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 5.0
    down: bool = False
    latency_s: float = 0.0
    tasks_per_prompt: int = 3
    adapters: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    errors_sent: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    counter: int = 0
    # 0: the 100-word VOCAB in a fixed template (every pair of instructions shares most words, the
    # worst case for the near-dup index). N > 0: N made-up words drawn Zipf-like in a frame of common
    # words, which is how real instruction sets look to the filter (rare words rarely shared).
    vocab_size: int = 0
    # Judge reply mode: chat calls answer with these replies in turn (a judge endpoint rating samples).
    judge_replies: tuple[str, ...] = ()
    judge_calls: int = 0


def _error(status: int, message: str, err_type: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": err_type, "param": None, "code": status}},
                        status_code=status)


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je", "ko",
              "ly", "mo", "nu", "pe")


@functools.cache
def _zipf_words(size: int) -> tuple[list[str], list[float]]:
    words = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES][:size]
    return words, [1.0 / rank for rank in range(1, len(words) + 1)]


def _instruction(state: FakeState) -> str:
    state.counter += 1
    if not state.vocab_size:
        return f"Explain how {' '.join(state.rng.sample(VOCAB, 8))} relate in case {state.counter}."
    words, weights = _zipf_words(state.vocab_size)
    w = state.rng.choices(words, weights=weights, k=8)
    return f"Explain how the {w[0]} {w[1]} of {w[2]} and {w[3]} {w[4]} in the {w[5]} {w[6]} {w[7]}."


def _instruction_list(state: FakeState, first: int) -> str:
    lines = []
    for offset in range(state.tasks_per_prompt):
        number = first + offset
        prefix = "" if offset == 0 else f"{number}. Instruction: "
        lines.append(f"{prefix}{_instruction(state)}\n{number}. Input: <noinput>\n")
    return " " + "\n".join(lines)


def _token_logprob(model: str, token: str) -> float:
    return -0.05 - (zlib.crc32(f"{model}|{token}".encode()) % 400) / 100.0


def _echo_choice(index: int, model: str, prompt: str) -> dict[str, Any]:
    tokens = re.findall(r"\s*\S+|\s+", prompt)
    values: list[float | None] = [None, *(_token_logprob(model, t) for t in tokens[1:])]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    top = [None if v is None else {t: v} for t, v in zip(tokens, values, strict=True)]
    return {"index": index, "text": prompt, "finish_reason": "length", "stop_reason": None,
            "logprobs": {"text_offset": offsets, "token_logprobs": values, "tokens": tokens, "top_logprobs": top}}


def create_fake_app(state: FakeState | None = None) -> FastAPI:
    state = state or FakeState()
    app = FastAPI()
    app.state.fake = state

    async def faults() -> JSONResponse | None:
        state.calls += 1
        if state.down:
            state.errors_sent += 1
            return _error(503, "service down", "ServiceUnavailable")
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        roll = state.rng.random()
        if roll < state.error_rate:
            state.errors_sent += 1
            return _error(500, "injected failure", "InternalServerError")
        if roll < state.error_rate + state.stall_rate:
            await asyncio.sleep(state.stall_s)
        return None

    def known(model: str) -> bool:
        return model == state.served_name or model in state.adapters

    @app.get("/health")
    async def health() -> Any:
        return _error(503, "down", "ServiceUnavailable") if state.down else PlainTextResponse("")

    @app.get("/v1/models")
    async def models() -> Any:
        data = [{"id": state.served_name, "object": "model", "created": 0, "owned_by": "fake", "parent": None}]
        data += [{"id": n, "object": "model", "created": 0, "owned_by": "fake", "root": p,
                  "parent": state.served_name} for n, p in state.adapters.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        if (fault := await faults()) is not None:
            return fault
        if not known(body.get("model", "")):
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        if body.get("echo") and body.get("logprobs") is not None:
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            count = sum(len(p.split()) for p in prompts)
            return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                    "model": body["model"], "choices": [_echo_choice(i, body["model"], p) for i, p in enumerate(prompts)],
                    "usage": {"prompt_tokens": count, "completion_tokens": 0, "total_tokens": count}}
        prompt = body["prompt"]
        choices = (body.get("structured_outputs") or {}).get("choice") or body.get("guided_choice")
        match = _TAIL.search(prompt)
        if choices:
            text = choices[zlib.crc32(f"{body['model']}|{prompt}".encode()) % len(choices)]
        elif match:
            text = _instruction_list(state, int(match.group(1)))
        else:
            text = f" Answer from {body['model']} #{state.rng.randint(0, 10**6)}."
        return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                          "total_tokens": len(prompt.split()) + len(text.split())}}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if (fault := await faults()) is not None:
            return fault
        if not known(body.get("model", "")):
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        text = f"Chat answer from {body['model']}."
        if state.judge_replies:
            text = state.judge_replies[state.judge_calls % len(state.judge_replies)]
            state.judge_calls += 1
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                     "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request) -> Any:
        body = await request.json()
        name = body["lora_name"]
        if name in state.adapters:
            return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        state.adapters[name] = body["lora_path"]
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request) -> Any:
        body = await request.json()
        name = body["lora_name"]
        if name not in state.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del state.adapters[name]
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    return app
