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
    assert (run.status, run.reason) == ("paused", "generator down")
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


def _gated_store(store: RunStore) -> None:
    store.commit_prompt("r", 1, 0, [_instruction(i) for i in range(5)] + [_instruction(9, "list_debris")])
    store.commit_sample(_sample(0))
    store.commit_sample(_sample(1), status="ok", error="judge_unparsed_kept: 'fine'")
    store.commit_sample(_sample(2), status="repetitive", error="80% of word 3-grams repeat")
    store.commit_sample(_sample(3), status="off_options", error="answer is none of: yes, no")
    assert store.commit_sample(_sample(3), status="off_options", error="again") is False  # idempotent


def test_gated_samples_are_counted_by_gate_and_never_exported(store: RunStore, tmp_path: Path) -> None:
    _gated_store(store)
    assert store.sample_counts("r", 1) == {"ok": 2, "repetitive": 1, "off_options": 1}
    assert store.gate_counts("r", 1) == {"repetitive": 1, "off_options": 1, "judge_unparsed_kept": 1}
    assert store.stats("r")["rounds"]["1"]["gates"] == store.gate_counts("r", 1)
    assert [r["status"] for r in store.samples_page("r", status="gated")] == ["repetitive", "off_options"]
    paths = export_round(store.iter_samples("r", 1), tmp_path / "round1")
    assert len(paths["sft"].read_text().splitlines()) == 2


def test_gate_counts_reach_the_api_view_and_metrics(store: RunStore) -> None:
    from orchestrator.api.metrics import RunCollector
    from orchestrator.api.queries import run_progress
    from orchestrator.execution.generator_counters import GeneratorCounters

    _gated_store(store)
    run = store.get_run("r").model_copy(update={"config": {"generation": {"target_per_round": 5}}})
    progress = run_progress(store, run, active=False)
    assert progress["gate_reasons"] == {"repetitive": 1, "off_options": 1, "judge_unparsed_kept": 1}
    assert progress["filter_reasons"] == {"list_debris": 1}
    round1 = progress["rounds"]["1"]
    assert round1["samples_gated"] == 2 and round1["queue_depth"] == 1  # 5 kept - 2 ok - 2 gated

    collector = RunCollector(store, lambda: ["r"], GeneratorCounters(object()))
    families = {family.name: family for family in collector.collect()}
    gates = {s.labels["gate"]: s.value for s in families["selfspec_response_gates"].samples
             if s.name.endswith("_total")}
    assert gates["repetitive"] == 1 and gates["off_options"] == 1 and gates["judge_unparsed_kept"] == 1
    assert gates["empty"] == 0 and len(gates) == 9  # a fixed label set: the gate names
    items = {s.labels["stage"]: s.value for s in families["selfspec_run_items"].samples if s.name.endswith("_total")}
    assert items["samples_gated"] == 2 and items["samples_ok"] == 2


def test_store_create_run_refuses_a_taken_id(tmp_path: Path) -> None:
    """Before: a second create with the same id silently kept the old run (and logged a second run_created)."""
    from orchestrator.store import RunIdConflict

    store = RunStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_run("same", "first", {"a": 1})
    with pytest.raises(RunIdConflict):
        store.create_run("same", "second", {"a": 2})
    assert store.get_run("same").name == "first"
    assert [e["type"] for e in store.events_after("same", 0)] == ["run_created"]
    store.close()
