"""Metrics and answer normalisation, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from evaluation.metrics import (
    Score,
    bootstrap,
    choice_measures,
    entity_measures,
    macro_average,
    measures_for,
    paired_difference,
    parse_spans,
    score_choice_task,
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


# ---- choice scoring and paired differences ----

def test_choice_measures_acc_and_acc_norm_pick_differently() -> None:
    labels = ("a", "bbbbbb")
    # Item 1: "a" has the higher sum (acc), "bbbbbb" the higher per-character value (acc_norm).
    measures = choice_measures(["a", "bbbbbb"], [[-2.0, -3.0], [-1.0, -0.5]], labels)
    assert [m.name for m in measures] == ["macro_f1", "acc", "acc_norm"]
    values = {m.name: m.value() for m in measures}
    assert values["acc"] == 1.0 and values["acc_norm"] == 0.5
    # An item whose request failed has no scores: wrong in every measure.
    failed = {m.name: m.value() for m in choice_measures(["a"], [[]], labels)}
    assert failed["acc"] == failed["acc_norm"] == 0.0


def test_score_choice_task_macro_f1_is_on_the_argmax_label() -> None:
    items = [_item(i, SENTIMENT[i % 3], "label_f1", SENTIMENT) for i in range(6)]
    perfect = [[0.0 if label == item.gold_label else -5.0 for label in SENTIMENT] for item in items]
    scores = {s.measure: s.value for s in score_choice_task(items, perfect, resamples=50)}
    assert scores == {"macro_f1": 100.0, "acc": 100.0, "acc_norm": 100.0}


def _yes_no_scores(correct: np.ndarray, *, key: str = "t", resamples: int = 1000, seed: int = 0) -> list[Score]:
    items = [_item(i, "yes", "yes_no", task=key) for i in range(len(correct))]
    return score_task(items, ["yes" if ok else "no" for ok in correct], resamples=resamples, seed=seed)


def test_paired_bootstrap_difference_on_a_known_difference() -> None:
    # 200 items: model A right on the first 120, model B on the first 100, so A - B = 10 points of accuracy
    # exactly, and B is never right where A is wrong.
    n = 200
    a = _yes_no_scores(np.arange(n) < 120)[1]
    b = _yes_no_scores(np.arange(n) < 100)[1]
    assert (a.measure, a.value, b.value) == ("accuracy", 60.0, 50.0)
    diff = paired_difference(a, b)
    assert diff.value == pytest.approx(10.0)
    assert diff.ci_low <= 10.0 <= diff.ci_high
    # Paired: the per-item differences are 0 or 1 (20 of 200), so the CI is about 10 +/- 4.2 and excludes 0,
    # although the two models' own CIs (about +/- 7 each) overlap.
    assert 0.0 < diff.ci_low and diff.ci_high - diff.ci_low < 10.0
    assert a.ci_low < b.ci_high
    # Resampled independently (another key), the same difference would look far less certain.
    unpaired = a.samples - _yes_no_scores(np.arange(n) < 100, key="other")[1].samples
    assert np.percentile(unpaired, 97.5) - np.percentile(unpaired, 2.5) > 1.5 * (diff.ci_high - diff.ci_low)
    # The same answers: difference 0, CI [0, 0].
    same = paired_difference(a, _yes_no_scores(np.arange(n) < 120)[1])
    assert (same.value, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_ci_covers_the_true_difference() -> None:
    # Populations with a true accuracy difference of 8 points (A right with p = 0.70, B with 0.62, sharing
    # most items): over repeated samples of 150 items the 95% CI holds the true difference ~95% of the time.
    rng = np.random.default_rng(123)
    covered, trials = 0, 60
    for trial in range(trials):
        u = rng.random(150)
        a = _yes_no_scores(u < 0.70, resamples=400, seed=trial)[1]
        b = _yes_no_scores(u < 0.62, resamples=400, seed=trial)[1]
        diff = paired_difference(a, b)
        covered += diff.ci_low <= 8.0 <= diff.ci_high
    assert covered >= 0.85 * trials


def test_paired_difference_refuses_unpaired_scores() -> None:
    a = _yes_no_scores(np.arange(20) < 10, resamples=100)[1]
    b = _yes_no_scores(np.arange(30) < 10, resamples=100)[1]
    with pytest.raises(ValueError, match="paired"):
        paired_difference(a, b)
