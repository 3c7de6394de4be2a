"""The whole demo on the real tiny model with small counts: two rounds, hot-loaded adapters, evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.pipeline.filtering import rouge_l, tokenize
from orchestrator.store import RunStore

# Two rounds on CPU take about twice the one-round test; run with `pytest -m slow` (or `make test-all`).
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TARGET = 3


def test_demo_two_rounds_on_the_real_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "SELFSPEC_STORAGE__DATA_DIR": str(tmp_path / "data"),
           "SELFSPEC_STORAGE__ADAPTERS_DIR": str(tmp_path / "data/adapters"),
           "SELFSPEC_CACHE_DIR": str(tiny_model_dir.parent.parent),
           "SELFSPEC_EVAL__MAX_ITEMS_PER_TASK": "2", "SELFSPEC_TRAINING__MAX_STEPS": "2",
           "SELFSPEC_GENERATION__MODEL": "smollm2-135m", "SELFSPEC_SERVICES__GENERATOR_ENGINE": "embedded"}
    result = subprocess.run(
        [sys.executable, "-m", "selfspec.cli", "demo", "--target", str(TARGET), "--rounds", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "before / after on held-back seed tasks" in result.stdout
    assert "evaluation report:" in result.stdout

    store = RunStore(f"sqlite:///{tmp_path / 'data/selfspec.db'}")
    (run,) = store.list_runs()
    run_id = run.id
    assert run.status == "completed"

    # Round 1: grounded samples with provenance, exported for training.
    round1 = list(store.iter_samples(run_id, 1))
    assert len(round1) == TARGET
    assert all(s.response and len(s.retrieved) == 5 and s.model == "smollm2-135m" for s in round1)
    kept1 = store.instructions(run_id, 1)
    assert len(kept1) == TARGET and all(len(i.seed_ids) == 3 for i in kept1)
    round_dir = tmp_path / "data/runs" / run_id / "round1"
    sft = [json.loads(line) for line in (round_dir / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == TARGET and all(r["messages"][1]["content"] == r["output"] for r in sft)
    provenance = [json.loads(line) for line in (round_dir / "provenance.jsonl").read_text().splitlines()]
    assert all(len(p["documents"]) == 5 for p in provenance)

    # Round 2: answered by the hot-loaded round-1 adapter, on instructions distinct from round 1.
    adapters = {a.round: a for a in store.list_adapters()}
    assert set(adapters) == {1, 2}
    round2 = list(store.iter_samples(run_id, 2))
    assert len(round2) == TARGET and {s.model for s in round2} == {adapters[1].name}
    kept2 = store.instructions(run_id, 2)
    for later in kept2:
        assert all(rouge_l(tokenize(later.text), tokenize(earlier.text)) <= 0.7 for earlier in kept1)

    for adapter in adapters.values():
        adapter_dir = Path(adapter.path)
        manifest = json.loads((adapter_dir / "selfspec-adapter.json").read_text())
        assert (adapter_dir / "adapter_config.json").is_file() and manifest["round"] == adapter.round
        assert manifest["base_model"] and manifest["dataset_sha256"]

    report = tmp_path / "data/runs" / run_id / "eval/report.md"
    assert report.is_file() and adapters[2].name in report.read_text()
    store.close()
