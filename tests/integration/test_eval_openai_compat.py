"""evaluate() through the real OpenAI-compatible client against an in-process fake vLLM app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from evaluation.report import write_report
from evaluation.runner import MACRO_TASK, evaluate
from selfspec.clients.openai_compat import OpenAICompatGenerator

pytestmark = pytest.mark.integration

ANSWERS = {"review one": "Positive.", "review two": "negative", "review three": "It is neutral."}


def _fake_vllm(requests: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "base", "object": "model"},
                                           {"id": "r1", "object": "model", "parent": "base"}]}

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        requests.append(body)
        item_input = body["prompt"].rsplit("### Input:\n", 1)[1].split("\n\n", 1)[0]
        text = ANSWERS[item_input] if body["model"] == "r1" else "no idea"
        return {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}

    return app


async def test_evaluate_over_http_contract(tmp_path: Path) -> None:
    task = tmp_path / "sentiment.jsonl"
    labels = ["positive", "negative", "neutral"]
    rows = [{"id": f"s{i}", "task": "sentiment", "instruction": "Classify the sentiment.", "input": text,
             "output": gold, "metric": "label_f1", "labels": labels}
            for i, (text, gold) in enumerate(zip(ANSWERS, labels, strict=True))]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    requests: list[dict[str, Any]] = []
    transport = httpx.ASGITransport(app=_fake_vllm(requests))
    async with OpenAICompatGenerator(["http://fake-vllm"], transport=transport, retries=0) as generator:
        results = await evaluate(generator, models=["base", "r1"], task_files=[task], shots=[0, 1],
                                 out_dir=tmp_path / "out", resamples=50)
    assert len(requests) == 2 * 2 * 3
    for body in requests:
        assert body["temperature"] == 0.0 and body["max_tokens"] == 16
        assert body["stop"] == ["\n###", "\n\n###"]
    macro = {(r.model, r.shots): r.value for r in results if r.task == MACRO_TASK and r.baseline is None}
    assert macro[("r1", 0)] == pytest.approx(100.0) and macro[("base", 0)] == 0.0
    assert write_report(results, tmp_path / "out").is_file()


async def test_choice_and_constrained_scoring_over_http(tmp_path: Path) -> None:
    """The scoring modes through the real client against the fake vLLM app (echo + logprobs, choice)."""
    from tests.fakes.openai_server import FakeState, create_fake_app

    task = tmp_path / "sentiment.jsonl"
    labels = ["positive", "negative", "neutral"]
    rows = [{"id": f"s{i}", "task": "sentiment", "instruction": "Classify the sentiment.", "input": f"review {i}",
             "output": labels[i % 3], "metric": "label_f1", "labels": labels} for i in range(12)]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    state = FakeState(served_name="base", adapters={"r1": "/adapters/r1"})
    app = create_fake_app(state)
    seen: list[dict[str, Any]] = []

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        if request.url.path == "/v1/completions":
            seen.append(json.loads(await request.body()))
        return await call_next(request)

    transport = httpx.ASGITransport(app=app)
    async with OpenAICompatGenerator(["http://fake-vllm"], transport=transport, retries=0) as generator:
        results = await evaluate(generator, models=["base", "r1"], task_files=[task], shots=[0],
                                 out_dir=tmp_path / "out", resamples=50, scoring=["choice", "constrained"])
    echo = [body for body in seen if body.get("echo")]
    assert len(echo) == 12 * 2  # one request per item and model, all options in it
    for body in echo:
        assert body["logprobs"] == 1 and body["max_tokens"] == 0 and len(body["prompt"]) == 1 + len(labels)
        assert body["prompt"][1:] == [body["prompt"][0] + label for label in labels]  # the prompt ends in a newline: no delimiter
    constrained = [body for body in seen if "structured_outputs" in body]
    assert len(constrained) == 12 * 2
    assert all(body["structured_outputs"] == {"choice": labels} for body in constrained)
    modes = {(r.scoring, r.metric) for r in results if r.task == "sentiment" and r.baseline is None}
    assert {("choice", "acc"), ("choice", "acc_norm"), ("choice", "macro_f1"), ("constrained", "macro_f1"),
            ("constrained", "invalid_rate")} <= modes
    invalid = [r for r in results if r.metric == "invalid_rate" and r.baseline is None]
    assert invalid and all(r.value == 0.0 for r in invalid)  # a constrained answer is always a label
    assert {(r.scoring, r.model, r.baseline) for r in results if r.task == MACRO_TASK and r.baseline} == {
        ("choice", "r1", "base"), ("constrained", "r1", "base")}
    assert write_report(results, tmp_path / "out").is_file()
