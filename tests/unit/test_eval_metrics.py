"""Metrics and answer normalisation, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from evaluation.metrics import (
    bootstrap,
    entity_measures,
    macro_average,
    measures_for,
    parse_spans,
    score_task,
)
from evaluation.normalize import normalize_answer, parse_entities, parse_label
from evaluation.schema import EvalItem

SENTIMENT = ("positive", "negative", "neutral")


def _item(index: int, output: str | list[str], metric: str, labels: tuple[str, ...] | None = None,
          task: str = "t") -> EvalItem:
    return EvalItem.model_validate({"id": f"{task}-{index}", "task": task, "instruction": "Do it.",
                                    "input": f"input {index}", "output": output, "metric": metric,
                                    "labels": labels})


def _main(items: list[EvalItem], texts: list[str]) -> dict[str, float]:
    return {s.measure: s.value for s in score_task(items, texts, resamples=50)}


# ---- normalisation and parsing ----

def test_normalize_answer_case_punctuation_articles() -> None:
    assert normalize_answer("The Heart-Failure.") == "heart failure"
    assert normalize_answer("  An  IL-2 (receptor) ") == "il 2 receptor"


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes, because the trial showed a benefit.", "yes"),
    ("No.", "no"),
    ("  maybe \nThe evidence is mixed.", "maybe"),
    ("The answer is: Yes", "yes"),
    ("Answer: no", "no"),
    ("TRUE", "yes"),
    ("It is unclear from the context.", "maybe"),
    ("It could be yes or no.", None),
    ("I cannot tell", None),
    ("", None),
])
def test_parse_label_yes_no(text: str, expected: str | None) -> None:
    assert parse_label(text, ("yes", "no", "maybe")) == expected


def test_parse_label_aliases_and_label_set() -> None:
    assert parse_label("positive.", SENTIMENT) == "positive"
    assert parse_label("Positive sentiment overall", SENTIMENT) == "positive"
    assert parse_label("The interaction is mechanism.", ("mechanism", "effect", "advise", "int", "none")) == "mechanism"
    assert parse_label("No interaction is described.", ("mechanism", "effect", "advise", "int", "none")) == "none"
    assert parse_label("CPR:4", ("upregulator", "downregulator", "agonist", "antagonist", "substrate")) == "downregulator"
    # a label outside the task's set is invalid, never a new class
    assert parse_label("maybe", ("yes", "no")) is None
    assert parse_label("excellent", SENTIMENT) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("aspirin; warfarin", ["aspirin", "warfarin"]),
    ("1. aspirin\n2. warfarin", ["aspirin", "warfarin"]),
    ("- aspirin\n* warfarin\n\u2022 heparin", ["aspirin", "warfarin", "heparin"]),
    ("aspirin, warfarin, and heparin.", ["aspirin", "warfarin", "heparin"]),
    ("2,4-dinitrophenol; TNF-alpha", ["2,4-dinitrophenol", "TNF-alpha"]),
    ("1 , 2 - dichloroethane", ["1 , 2 - dichloroethane"]),
    ("HER2 <Gene_or_gene_product>, epithelium <Tissue>", ["HER2", "epithelium"]),
    ('["IL-2", "IL-4"]', ["IL-2", "IL-4"]),
    ("Entities: aspirin; Aspirin; warfarin", ["aspirin", "warfarin"]),
    ("None", []),
    ("N/A", []),
    ("none.", []),
    ("There are no diseases mentioned in this sentence.", []),
    ("No chemicals are mentioned.", []),
    ("None of the above.", []),
    ("NO synthase; nitric oxide", ["NO synthase", "nitric oxide"]),
])
def test_parse_entities(text: str, expected: list[str]) -> None:
    assert parse_entities(text) == expected


def test_parse_spans_reads_labels_for_multilabel_tasks() -> None:
    labels = ("Resisting cell death", "Inducing angiogenesis")
    assert parse_spans("(1) resisting cell death; Angiogenesis", labels) == ["Resisting cell death", "Angiogenesis"]
    assert parse_spans("Inducing angiogenesis, inducing angiogenesis", labels) == ["Inducing angiogenesis"]


# ---- hand-computed scores ----

def test_entity_f1_exact_and_partial_overlap() -> None:
    items = [
        _item(1, ["aspirin", "heart failure"], "entity_f1"),
        _item(2, ["warfarin"], "entity_f1"),
        _item(3, [], "entity_f1"),
    ]
    texts = ["Aspirin; congestive heart failure", "None", "ibuprofen"]
    scores = _main(items, texts)
    # exact: tp=1 (aspirin), predicted 3, gold 3 -> 2*1/(3+3)
    assert scores["entity_f1"] == pytest.approx(100 * 2 / 6)
    # tokens: overlap aspirin, heart, failure = 3; predicted tokens 4+0+1 = 5; gold tokens 3+1+0 = 4
    assert scores["entity_token_f1"] == pytest.approx(100 * 6 / 9)


def test_entity_f1_nothing_to_find_nothing_found_is_perfect() -> None:
    assert _main([_item(1, [], "entity_f1")], ["None"])["entity_f1"] == pytest.approx(100.0)


def test_label_macro_f1_invalid_prediction_is_wrong_not_a_class() -> None:
    items = [_item(i, gold, "label_f1", SENTIMENT) for i, gold in
             enumerate(["positive", "positive", "negative", "neutral"])]
    texts = ["Positive.", "excellent", "negative", "Negative"]
    scores = _main(items, texts)
    # positive: tp1 pred1 gold2 -> 2/3; negative: tp1 pred2 gold1 -> 2/3; neutral: tp0 gold1 -> 0
    assert scores["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 0) / 3)
    assert scores["accuracy"] == pytest.approx(50.0)
    assert scores["invalid_rate"] == pytest.approx(25.0)


def test_label_macro_f1_skips_labels_absent_from_gold_and_predictions() -> None:
    items = [_item(i, gold, "label_f1", SENTIMENT) for i, gold in enumerate(["positive", "negative"])]
    assert _main(items, ["positive", "negative"])["macro_f1"] == pytest.approx(100.0)


def test_yes_no_accuracy_and_macro_f1() -> None:
    items = [_item(i, gold, "yes_no") for i, gold in enumerate(["yes", "no", "maybe", "yes"])]
    texts = ["Yes, because it worked.", "No.", "perhaps", "no"]
    scores = _main(items, texts)
    assert scores["accuracy"] == pytest.approx(75.0)
    # yes: 2*1/(1+2); no: 2*1/(2+1); maybe: 1
    assert scores["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)


def test_rouge_l_equals_rouge_score_package() -> None:
    golds = ["Intensive lifestyle change halved the risk of type 2 diabetes.",
             "Prompt antibiotics cured the patient's bacterial meningitis."]
    preds = ["The lifestyle program halved diabetes risk over three years.",
             "The patient recovered after antibiotics were given for meningitis."]
    items = [_item(i, g, "rouge_l") for i, g in enumerate(golds)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = np.mean([scorer.score(g, p)["rougeL"].fmeasure for g, p in zip(golds, preds, strict=True)])
    assert _main(items, preds)["rouge_l"] == pytest.approx(100 * expected)


# ---- bootstrap and macro average ----

def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    items = [_item(i, "positive" if i % 3 else "negative", "label_f1", SENTIMENT) for i in range(40)]
    texts = ["positive" if i % 2 else "negative" for i in range(40)]
    first = score_task(items, texts, resamples=300, seed=7)
    again = score_task(items, texts, resamples=300, seed=7)
    other = score_task(items, texts, resamples=300, seed=8)
    for score in first:
        assert score.ci_low <= score.value <= score.ci_high
    assert [s.ci_low for s in first] == [s.ci_low for s in again]
    assert np.array_equal(first[0].samples, again[0].samples)
    assert not np.array_equal(first[0].samples, other[0].samples)
    assert first[0].samples.shape == (300,)


def test_bootstrap_weighted_sums_match_direct_computation_of_a_resample() -> None:
    measures = entity_measures([["a"], ["b", "c"], []], [["a"], ["b"], ["x"]])
    samples = bootstrap(measures, resamples=5, seed=1, key="k")
    assert set(samples) == {"entity_f1", "entity_token_f1"}
    assert samples["entity_f1"].shape == (5,)
    assert np.all((samples["entity_f1"] >= 0) & (samples["entity_f1"] <= 1))


def test_macro_average_is_mean_of_main_measures() -> None:
    a = [_item(i, "yes", "yes_no", task="a") for i in range(10)]
    b = [_item(i, ["x"], "entity_f1", task="b") for i in range(10)]
    score_a = score_task(a, ["yes"] * 10, resamples=100)[0]
    score_b = score_task(b, ["x"] * 5 + ["None"] * 5, resamples=100)[0]
    macro = macro_average([score_a, score_b])
    assert macro.value == pytest.approx((score_a.value + score_b.value) / 2)
    assert macro.n == 2
    assert macro.ci_low <= macro.value <= macro.ci_high


def test_measures_for_orders_main_measure_first() -> None:
    items = [_item(1, "yes", "yes_no")]
    assert [m.name for m in measures_for(items, ["yes"])] == ["macro_f1", "accuracy", "invalid_rate"]
