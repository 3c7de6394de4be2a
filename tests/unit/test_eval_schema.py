"""The task format: EvalItem validation and task file loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluation.schema import EvalItem, find_task_files, load_task_file
from selfspec.errors import InputFileError

SHIPPED = Path(__file__).resolve().parents[2] / "evaluation" / "tasks"


def _row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {"id": "x1", "task": "t", "instruction": "Classify.", "input": "text",
                              "output": "Positive", "metric": "label_f1", "labels": ["positive", "negative"]}
    row.update(overrides)
    return row


def test_label_item_gold_is_spelled_as_in_labels() -> None:
    item = EvalItem.model_validate(_row())
    assert item.gold_label == "positive" and item.answer_text() == "positive"


def test_entity_output_accepts_list_or_json_string() -> None:
    as_list = EvalItem.model_validate(_row(output=["a", "b"], metric="entity_f1", labels=None))
    as_text = EvalItem.model_validate(_row(output='["a", "b"]', metric="entity_f1", labels=None))
    assert as_list.output == as_text.output == ("a", "b")
    assert as_list.answer_text() == "a; b"
    empty = EvalItem.model_validate(_row(output=[], metric="entity_f1", labels=None))
    assert empty.answer_text() == "None"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"output": "great"}, "not one of labels"),
    ({"labels": None}, "needs a non-empty 'labels'"),
    ({"metric": "entity_f1", "output": "a; b", "labels": None}, "JSON list"),
    ({"metric": "yes_no", "output": "yes", "labels": ["yes", "sometimes"]}, "subset"),
    ({"metric": "rouge_l", "output": ["a"], "labels": None}, "non-blank string"),
    ({"task": "bad/name"}, "pattern"),
    ({"extra": 1}, "Extra inputs"),
])
def test_invalid_items_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EvalItem.model_validate(_row(**overrides))


def test_yes_no_labels_default() -> None:
    item = EvalItem.model_validate(_row(metric="yes_no", output="Maybe", labels=None))
    assert item.label_set == ("yes", "no", "maybe") and item.gold_label == "maybe"


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_row()) + "\n\n" + json.dumps(_row(id="x2", output="great")) + "\n")
    with pytest.raises(InputFileError, match=r"t\.jsonl:3: .*not one of labels"):
        load_task_file(path)


def test_one_task_per_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(id="x2", task="other")) + "\n")
    with pytest.raises(InputFileError, match="one file holds one task"):
        load_task_file(path)


def test_find_task_files_expands_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.jsonl").write_text(json.dumps(_row()) + "\n")
    (tmp_path / "a" / "notes.md").write_text("x")
    assert find_task_files([tmp_path]) == [tmp_path / "a" / "b.jsonl"]
    with pytest.raises(InputFileError, match="no such task file"):
        find_task_files([tmp_path / "missing"])


def test_shipped_task_files_load() -> None:
    if not SHIPPED.is_dir():
        pytest.skip("no shipped task files")
    for path in find_task_files([SHIPPED]):
        items = load_task_file(path)
        assert all(item.answer_text().strip() for item in items)
