"""The 13-gram screen that keeps evaluation items and held-back seeds out of every training set."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.pipeline.decontamination import build_screen, screen_records
from orchestrator.pipeline.records import seed_record
from selfspec.types import ChatMessage, SeedTask, SFTRecord

EVAL_INPUT = ("Patients received oral ibuprofen every eight hours for postoperative pain after knee surgery "
              "in the trial.")


def _record(rid: str, output: str, *, instruction: str = "Summarise the passage.", input_text: str = "") -> SFTRecord:
    return SFTRecord(id=rid, run_id="r", round=1, source_sample_id=rid, instruction=instruction, input=input_text,
                     output=output, messages=(ChatMessage(role="user", content=instruction),
                                              ChatMessage(role="assistant", content=output)))


def _task_file(tmp_path: Path) -> Path:
    path = tmp_path / "chem.jsonl"
    rows = [
        {"id": "c1", "task": "chem", "instruction": "List the drugs.", "input": EVAL_INPUT, "output": ["ibuprofen"],
         "metric": "entity_f1"},
        {"id": "c2", "task": "chem", "instruction": "List the drugs.", "input": "Take aspirin with food today.",
         "output": ["aspirin"],
         "metric": "entity_f1"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_screen_drops_records_sharing_a_13_gram_with_an_eval_input_or_a_held_back_seed(tmp_path: Path) -> None:
    held = SeedTask(id="bio-9", domain="biomedical", task="qa", instruction="Name the enzyme that metabolises "
                    "warfarin in the human liver and explain briefly why it matters for dosing", input="",
                    output="CYP2C9.")
    screen = build_screen([_task_file(tmp_path)], [held])
    assert screen.protected == 2 + 1  # two eval inputs; the held seed's task (its one-word output is no leak)
    records = [
        _record("clean", "Ibuprofen relieves pain."),
        # 13 consecutive words of the eval input, with different case and punctuation: still a hit.
        _record("copied", "As reported: patients received ORAL ibuprofen, every eight hours for postoperative pain "
                          "after knee surgery."),
        _record("seedleak", "ok", instruction="Name the enzyme that metabolises warfarin in the human liver and "
                                              "explain briefly why it matters for dosing"),
        # An eval input shorter than 13 words counts only as a whole sequence.
        _record("short", "Patients should take aspirin with food today if needed."),
        _record("shortclean", "Aspirin, taken daily with food."),
        _record("label", "CYP2C9."),  # the held seed's one-word answer, in another task: no leak
    ]
    kept, dropped = screen_records(records, screen)
    assert dropped == ["copied", "seedleak", "short"]
    assert [r.id for r in kept] == ["clean", "shortclean", "label"]


def test_seed_record_carries_the_seed_and_is_marked() -> None:
    seed = SeedTask(id="bio-1", domain="biomedical", task="ner", instruction="List diseases.", input="Flu.",
                    output="flu")
    record = seed_record(seed, run_id="run", round=2)
    assert record.id == "seed:bio-1:sft" and record.source_sample_id == "seed:bio-1" and record.round == 2
    assert (record.instruction, record.input, record.output) == ("List diseases.", "Flu.", "flu")
    assert record.messages[0].content == "List diseases.\n\nFlu."
