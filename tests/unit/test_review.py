from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.execution.review import (
    ReviewConflict,
    approve_round,
    dataset_samples,
    export_reviewed_round,
    review_items,
    review_log,
    review_sample,
    round_approved,
)
from orchestrator.store import RunStore
from selfspec.errors import RunNotFound
from tests.fakes.review_round import populate_review_round, sample_id


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(f"sqlite:///{tmp_path}/db.sqlite")
    store.create_run("r", "test", {})
    populate_review_round(store, "r")
    return store


def _dataset_ids(store: RunStore) -> list[str]:
    return [s.id for s in dataset_samples(store, "r", 1)]


def test_review_reject_and_restore_change_the_dataset_and_log_who(store: RunStore) -> None:
    assert _dataset_ids(store) == [sample_id("r", i) for i in range(4)]  # ok samples only
    state, changed = review_sample(store, "r", sample_id("r", 1), action="reject", by="alice", note="off-topic")
    assert changed and state["decision"] == "rejected" and not state["included"]
    assert sample_id("r", 1) not in _dataset_ids(store)
    _, changed = review_sample(store, "r", sample_id("r", 1), action="reject", by="alice")
    assert not changed  # nothing changed, nothing recorded
    state, changed = review_sample(store, "r", sample_id("r", 1), action="restore", by="bob")
    assert changed and state["decision"] is None and state["included"]
    assert _dataset_ids(store) == [sample_id("r", i) for i in range(4)]
    log = review_log(store, "r")
    assert [(e["data"]["action"], e["data"]["by"]) for e in log] == [("reject", "alice"), ("restore", "bob")]
    assert log[0]["data"]["note"] == "off-topic" and log[0]["ts"] is not None


def test_review_restore_of_a_gated_sample_puts_it_in_and_a_failed_one_needs_an_edit(store: RunStore) -> None:
    state, _ = review_sample(store, "r", sample_id("r", 4), action="restore", by="local")
    assert state["decision"] == "restored" and state["included"]
    assert sample_id("r", 4) in _dataset_ids(store)
    with pytest.raises(ReviewConflict):
        review_sample(store, "r", sample_id("r", 5), action="restore", by="local")
    review_sample(store, "r", sample_id("r", 5), action="edit", by="local", response="A written answer.")
    review_sample(store, "r", sample_id("r", 5), action="restore", by="local")
    (restored,) = [s for s in dataset_samples(store, "r", 1) if s.id == sample_id("r", 5)]
    assert restored.response == "A written answer."
    with pytest.raises(RunNotFound):
        review_sample(store, "r", "nope", action="reject", by="local")


def test_review_edit_is_exported_and_undone_by_sending_the_original(store: RunStore, tmp_path: Path) -> None:
    original = next(s for s in dataset_samples(store, "r", 1) if s.id == sample_id("r", 0)).response
    state, _ = review_sample(store, "r", sample_id("r", 0), action="edit", by="local", response="Better answer.")
    assert state["edited"] and state["included"]
    review_sample(store, "r", sample_id("r", 2), action="reject", by="local")
    paths = export_reviewed_round(store, "r", 1, tmp_path / "round1")
    records = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    assert [r["source_sample_id"] for r in records] == [sample_id("r", i) for i in (0, 1, 3)]
    assert records[0]["output"] == "Better answer." and records[0]["messages"][1]["content"] == "Better answer."
    edit = review_log(store, "r")[0]["data"]
    assert (edit["before"], edit["after"]) == (original, "Better answer.")
    state, changed = review_sample(store, "r", sample_id("r", 0), action="edit", by="local", response=original)
    assert changed and not state["edited"]
    with pytest.raises(ReviewConflict):
        review_sample(store, "r", sample_id("r", 0), action="edit", by="local", response="  ")


def test_review_items_list_dropped_instructions_and_filter(store: RunStore) -> None:
    items = review_items(store, "r")
    assert len(items) == 9
    near = review_items(store, "r", verdict="near_duplicate")
    assert [(i["verdict"], i["sample"]) for i in near] == [("near_duplicate", None)] * 2
    assert near[0]["reason"].startswith("ROUGE-L")
    (copied,) = review_items(store, "r", status="gated")
    assert copied["sample"]["status"] == "copied" and copied["sample"]["error"].startswith("copied")
    assert copied["sample"]["retrieved"][0] == {"doc_id": "bm-0001", "score": 7.25}
    assert len(review_items(store, "r", status="ok")) == 4
    review_sample(store, "r", sample_id("r", 3), action="reject", by="local")
    assert [i["sample"]["id"] for i in review_items(store, "r", review="rejected")] == [sample_id("r", 3)]
    assert len(review_items(store, "r", review="included")) == 3
    assert len(review_items(store, "r", review="excluded")) == 6  # 3 dropped, gated, failed, rejected
    assert {i["instruction"] for i in review_items(store, "r", q="tnf-ALPHA")} == {
        "Explain the role of TNF-alpha in lung inflammation.", "Explain the role of TNF-alpha in the lung inflammation."}
    assert review_items(store, "r", q="100%") == [] and review_items(store, "r", q="_") == []
    assert len(review_items(store, "r", q="receptor on t cells")) == 5  # responses (gated too) are searched
    first = review_items(store, "r", limit=4)
    rest = review_items(store, "r", after_seq=first[-1]["seq"], limit=50)
    assert len(first) + len(rest) == 9


def test_review_approval_is_recorded_once(store: RunStore) -> None:
    assert not round_approved(store, "r", 1)
    assert approve_round(store, "r", 1, by="local") is True
    assert approve_round(store, "r", 1, by="local") is False
    assert round_approved(store, "r", 1) and not round_approved(store, "r", 2)
    assert [e["data"]["action"] for e in review_log(store, "r")] == ["approve"]
