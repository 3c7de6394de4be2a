"""The dataset card of an exported round, from what the run store knows about it (selfspec/cards.py)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.store import RunStore
from selfspec.cards import DatasetFacts, ReviewCounts, RoundCounts, dataset_card
from selfspec.files import write_text_atomic
from selfspec.settings import RunConfig
from selfspec.types import AdapterRef


def round_counts(store: RunStore, run_id: str, round: int) -> RoundCounts:
    return RoundCounts(instruction_prompts=len(store.done_prompt_indexes(run_id, round)),
                       verdicts=store.verdict_counts(run_id, round), samples=store.sample_counts(run_id, round),
                       gates=store.gate_counts(run_id, round))


def write_round_card(store: RunStore, out_dir: Path, *, run_id: str, round: int, config: RunConfig,
                     instruction_model: str, response_model: str, adapter: AdapterRef | None,
                     review: ReviewCounts | None = None) -> Path:
    """`out_dir/README.md` for the export in `out_dir` (its row count read from `sft.jsonl`)."""
    with open(out_dir / "sft.jsonl", "rb") as handle:
        rows = sum(1 for _ in handle)
    facts = DatasetFacts(run_id=run_id, round=round, config=config, instruction_model=instruction_model,
                         response_model=response_model, counts=round_counts(store, run_id, round), adapter=adapter,
                         review=review)
    path = out_dir / "README.md"
    write_text_atomic(path, dataset_card(facts, rows=rows))
    return path
