from __future__ import annotations

import asyncio
import math
from pathlib import Path

from orchestrator.execution.estimate import dry_run_estimate
from selfspec.settings import load_config
from selfspec.types import Completion, RetrievedDoc, SamplingParams

REPO = Path(__file__).resolve().parents[2]


class StubGenerator:
    def __init__(self) -> None:
        self.calls: list[SamplingParams] = []

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        self.calls.append(params)
        await asyncio.sleep(0.05)
        return Completion(text="4. A task", finish_reason="stop", prompt_tokens=len(prompt) // 4,
                          completion_tokens=100, model=model)


class StubRetriever:
    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        return [RetrievedDoc(id=str(i), score=1.0, text="word " * 100) for i in range(k)]


def test_dry_run_estimates_every_stage_from_one_probe() -> None:
    config = load_config(REPO / "configs/demo.toml", {"generation.price_per_1k_tokens": 0.5})
    generator = StubGenerator()
    result = asyncio.run(dry_run_estimate(config, generator=generator, retriever=StubRetriever(), startup_s=3.0))
    assert len(generator.calls) == 16 and generator.calls[0].max_tokens == 128  # one batch, the stage's settings
    stages = {s.stage: s for s in result.stages}
    assert list(stages) == ["services up", "round1:instructions", "round1:responses", "round1:training",
                            "round1:hot-load", "round2:instructions", "round2:responses", "round2:training",
                            "round2:hot-load", "evaluation"]
    assert stages["round1:instructions"].requests == 57  # 32 x 57/32 (the measured yield)
    assert stages["round1:instructions"].completion_tokens == 57 * 100
    response_tokens = min(80, math.ceil(111 / result.probe["chars_per_token"]))  # 111 characters on average
    assert stages["round1:responses"].requests == 76
    assert stages["round1:responses"].completion_tokens == 76 * response_tokens
    # round 2 answers half as many through the adapter, which is assumed slower than the base
    assert stages["round1:responses"].seconds / 2 < stages["round2:responses"].seconds
    assert 16 * 100 / 1.0 < result.probe["tokens_per_s"] <= 16 * 100 / 0.05  # measured by the probe
    assert stages["round1:training"].requests == 28  # as in the demo: 112 records x 2 epochs / 8
    assert result.cost == result.tokens / 1000 * 0.5 and result.total_s > 0
    assert result.to_dict()["assumptions"]


def test_a_run_of_the_same_config_finds_the_dry_runs_estimate(tmp_path: Path) -> None:
    import json

    from orchestrator.execution.dry_run import estimate_path, estimate_vs_actual

    config = load_config(REPO / "configs/demo.toml", {"storage.data_dir": str(tmp_path)})
    assert estimate_vs_actual(config, {"round1:synthesis": 400.0}) is None
    stages = [{"stage": "round1:instructions", "seconds": 100.0}, {"stage": "round1:responses", "seconds": 50.0},
              {"stage": "round1:training", "seconds": 300.0}]
    estimate_path(config).parent.mkdir(parents=True)
    estimate_path(config).write_text(json.dumps({"stages": stages}))
    rows = estimate_vs_actual(config, {"round1:synthesis": 400.0, "round1:training": 280.0})
    assert rows == [{"phase": "round1:synthesis", "estimated_s": 150.0, "actual_s": 400.0},
                    {"phase": "round1:training", "estimated_s": 300.0, "actual_s": 280.0}]
    other = load_config(REPO / "configs/demo.toml", {"storage.data_dir": str(tmp_path), "rounds.count": 1})
    assert estimate_vs_actual(other, {}) is None  # another config: no estimate
