"""n-gram contamination check between a synthetic dataset and eval inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.contamination import check_contamination, dataset_texts, ngrams, tokenize
from evaluation.schema import EvalItem
from selfspec.errors import InputFileError

LONG = ("In a randomized trial of 180 adults with chronic low back pain, a 12-week supervised exercise "
        "program lowered average pain scores by 2.1 points.")


def _item(item_id: str, text: str, task: str = "qa") -> EvalItem:
    return EvalItem(id=item_id, task=task, instruction="Answer.", input=text, output="yes", metric="yes_no")


def test_tokenize_and_ngrams() -> None:
    assert tokenize("The IL-2 (receptor), 12-week!") == ["the", "il", "2", "receptor", "12", "week"]
    assert ngrams(["a", "b", "c"], 2) == {("a", "b"), ("b", "c")}
    assert ngrams(["a"], 2) == set()


def test_flags_items_sharing_a_13_gram_and_only_those() -> None:
    leaked = "Background: " + " ".join(LONG.split()[3:20]) + " and more words follow here."
    items = [
        _item("q1", LONG),
        _item("q2", "Does aspirin prevent a second heart attack in adults who already had one before?"),
        _item("n1", "Short drug sentence.", task="ner"),
        _item("n2", "Unseen short input.", task="ner"),
    ]
    texts = [leaked, "Patients took a short drug sentence. twice daily", "Something else entirely."]
    report = check_contamination(texts, items, n=13, dataset="sft_r1.jsonl")
    assert report.per_task == {"qa": (1, 2), "ner": (1, 2)}
    assert report.examples == {"qa": ["q1"], "ner": ["n1"]}
    assert report.flagged == 2 and report.total == 4 and report.fraction == pytest.approx(0.5)
    assert report.line().startswith("Contamination (13-gram overlap with sft_r1.jsonl): 2/4 eval items (50.0%)")


def test_twelve_shared_words_are_not_a_13_gram() -> None:
    twelve = " ".join(tokenize(LONG)[:12])
    assert check_contamination([twelve], [_item("q1", LONG)], n=13).flagged == 0
    assert check_contamination([twelve], [_item("q1", LONG)], n=8).flagged == 1


def test_dataset_texts_reads_alpaca_fields_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    rows = [
        {"id": "1", "instruction": "Do X.", "input": "some input", "output": "an output", "round": 1},
        {"id": "2", "messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}]},
        {"id": "3", "instruction": "Y", "response": "a response"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list(dataset_texts(path)) == ["Do X.", "some input", "an output", "hello there", "hi", "Y", "a response"]
    path.write_text('{"instruction": "ok"}\nnot json\n')
    with pytest.raises(InputFileError, match=r"sft\.jsonl:2"):
        list(dataset_texts(path))
