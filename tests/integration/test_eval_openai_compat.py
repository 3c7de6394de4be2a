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
    macro = {(r.model, r.shots): r.value for r in results if r.task == MACRO_TASK}
    assert macro[("r1", 0)] == pytest.approx(100.0) and macro[("base", 0)] == 0.0
    assert write_report(results, tmp_path / "out").is_file()
