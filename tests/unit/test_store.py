from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.pipeline.records import export_round
from orchestrator.store import RunStore
from selfspec.errors import RunNotFound
from selfspec.types import DocRef, Instruction, Sample


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(f"sqlite:///{tmp_path}/db.sqlite")
    store.create_run("r", "test", {"a": 1})
    return store


def _instruction(i: int, verdict: str = "kept") -> Instruction:
    return Instruction(id=f"r:r1:p0:{i}", run_id="r", round=1, text=f"Task {i}", input="", seed_ids=("s1",),
                       verdict=verdict)  # type: ignore[arg-type]


def _sample(i: int) -> Sample:
    return Sample(id=f"r:r1:p0:{i}:s", run_id="r", round=1, instruction_id=f"r:r1:p0:{i}", instruction=f"Task {i}",
                  response=f"Answer {i}", retrieved=(DocRef(doc_id="d1", score=1.5),), model="m", prompt_name="response",
                  prompt_hash="h")


def test_prompt_commit_is_idempotent(store: RunStore) -> None:
    items = [_instruction(0), _instruction(1, "near_duplicate")]
    assert store.commit_prompt("r", 1, 0, items) == 2
    assert store.commit_prompt("r", 1, 0, items) == 0  # a retried commit adds nothing
    assert store.verdict_counts("r", 1) == {"kept": 1, "near_duplicate": 1}
    assert store.done_prompt_indexes("r", 1) == {0}


def test_sample_commit_is_idempotent_per_instruction(store: RunStore) -> None:
    assert store.commit_sample(_sample(0)) is True
    assert store.commit_sample(_sample(0)) is False
    assert store.sample_counts("r", 1) == {"ok": 1}
    (sample,) = store.iter_samples("r", 1)
    assert sample.retrieved == (DocRef(doc_id="d1", score=1.5),)


def test_status_and_events(store: RunStore) -> None:
    store.set_status("r", "paused", reason="generator down")
    run = store.get_run("r")
    assert (run["status"], run["reason"]) == ("paused", "generator down")
    kinds = [e["type"] for e in store.events_after("r")]
    assert kinds == ["run_created", "status"]
    with pytest.raises(RunNotFound):
        store.get_run("nope")


def test_export_round_writes_all_views(store: RunStore, tmp_path: Path) -> None:
    for i in range(3):
        store.commit_sample(_sample(i))
    paths = export_round(store.iter_samples("r", 1), tmp_path / "round1")
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(paths["alpaca"]), split="train")
    assert loaded.num_rows == 3 and set(loaded.column_names) == {"instruction", "input", "output"}
    messages = datasets.load_dataset("json", data_files=str(paths["messages"]), split="train")
    assert messages[0]["messages"][1] == {"role": "assistant", "content": "Answer 0"}
    assert (tmp_path / "round1/provenance.jsonl").read_text().count('"d1"') == 3
