"""The walking skeleton end to end on the real tiny model with small counts: `selfspec demo`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.store import RunStore

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_one_round_on_the_real_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "SELFSPEC_STORAGE__DATA_DIR": str(tmp_path / "data"),
           "SELFSPEC_STORAGE__ADAPTERS_DIR": str(tmp_path / "data/adapters"),
           "SELFSPEC_CACHE_DIR": str(tiny_model_dir.parent.parent), "SELFSPEC_EVAL__MAX_ITEMS_PER_TASK": "2",
           # The plumbing on the tiny model and the embedded server (the demo default is Gemma on vLLM).
           "SELFSPEC_GENERATION__MODEL": "smollm2-135m", "SELFSPEC_SERVICES__GENERATOR_ENGINE": "embedded",
           "SELFSPEC_TRAINING__MAX_STEPS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "selfspec.cli", "demo", "--target", "4", "--rounds", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "before / after on held-back seed tasks" in result.stdout
    # Decontamination ran before training and found nothing; the prompting seeds joined (mix_seeds).
    assert re.search(r"round 1 training set: 0 of \d+ records share a 13-gram", " ".join(result.stdout.split()))

    store = RunStore(f"sqlite:///{tmp_path / 'data/selfspec.db'}")
    (run,) = store.list_runs()
    assert run.status == "completed"
    samples = list(store.iter_samples(run.id, 1))
    assert len(samples) == 4
    assert all(s.response and len(s.retrieved) == 5 for s in samples)  # grounded on top-5 BM25 passages
    kept = store.instructions(run.id, 1)
    # A gated response is answered again or its instruction replaced: at most one extra kept per gated.
    gated = sum(n for status, n in store.sample_counts(run.id, 1).items() if status not in ("ok", "failed"))
    assert 4 <= len(kept) <= 4 + gated and all(len(i.seed_ids) == 3 for i in kept)

    round_dir = tmp_path / "data/runs" / run.id / "round1"
    sft = [json.loads(line) for line in (round_dir / "sft.jsonl").read_text().splitlines()]
    assert len(sft) == 4 and all(r["messages"][1]["content"] == r["output"] for r in sft)
    train = [json.loads(line) for line in (round_dir / "train.jsonl").read_text().splitlines()]
    seeds = [r for r in train if r["id"].startswith("seed:")]
    assert len(train) == 4 + len(seeds) and len(seeds) > 40  # the prompting seeds, never the held-back ones
    provenance = [json.loads(line) for line in (round_dir / "provenance.jsonl").read_text().splitlines()]
    assert all(len(p["documents"]) == 5 for p in provenance)

    (adapter,) = store.list_adapters()
    adapter_dir = Path(adapter.path)
    manifest = json.loads((adapter_dir / "selfspec-adapter.json").read_text())
    assert (adapter_dir / "adapter_config.json").is_file() and manifest["round"] == 1
    assert manifest["base_model"] and manifest["dataset_sha256"]
    store.close()
