"""Scores for the four task metrics, with bootstrap confidence intervals and a macro average.

Every measure is computed from per-item feature rows whose column sums determine the score, so
a bootstrap resample is just a weighted sum (weights = how often each item was drawn):

    entity_f1        exact-match micro F1 over items (sets of normalised spans): tp, n_pred, n_gold
    entity_token_f1  partial-overlap micro F1 over normalised tokens of all spans: same columns
    macro_f1         label macro-F1 over the task's label set (label_f1, yes_no); an invalid or
                     unseen prediction is wrong for its gold label and never becomes a class
    accuracy         fraction of items whose parsed label equals the gold label
    invalid_rate     fraction of answers that could not be read as any label
    rouge_l          mean ROUGE-L F-measure (rouge-score, stemming on)

In `choice` scoring (label tasks answered by log-likelihood, lm-evaluation-harness style) the
measures are macro_f1 on the option with the highest summed log-probability, `acc` (that option
is gold) and `acc_norm` (the option with the highest log-probability per character is gold).

Values are percentages (0-100). The first measure per metric is the task's *main* measure; the
macro average over tasks averages main measures, and its CI comes from averaging the tasks'
bootstrap samples (each task resampled independently, with a seed fixed per task name so the
same resamples are used for every model: comparisons between models are paired, and
`paired_difference` reads a model-minus-model CI straight off the two sample vectors).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from evaluation.normalize import normalize_answer, parse_entities, parse_label
from evaluation.schema import EvalItem, Metric

RESAMPLES = 1000
CONFIDENCE = 0.95
_CHUNK = 100  # bootstrap resamples drawn per matrix product; bounds memory to CHUNK x n_items

MEASURES: dict[Metric, tuple[str, ...]] = {
    "entity_f1": ("entity_f1", "entity_token_f1"),
    "label_f1": ("macro_f1", "accuracy", "invalid_rate"),
    "yes_no": ("macro_f1", "accuracy", "invalid_rate"),
    "rouge_l": ("rouge_l",),
}
CHOICE_MEASURES: tuple[str, ...] = ("macro_f1", "acc", "acc_norm")
MAIN_MEASURES = frozenset(names[0] for names in MEASURES.values())

Prediction = str | list[str] | None


@dataclass(frozen=True)
class Measure:
    """Per-item feature rows plus the function turning (weighted) column sums into a 0-1 score."""

    name: str
    features: np.ndarray
    aggregate: Callable[[np.ndarray], np.ndarray]

    def value(self) -> float:
        return float(self.aggregate(self.features.sum(axis=0)))


@dataclass(frozen=True)
class Score:
    """One measure on one task (or the macro average), in percent, with its bootstrap CI."""

    measure: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    samples: np.ndarray = field(repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.measure in MAIN_MEASURES


# ---- aggregates over column sums (last axis = features) ----

def f1_from_counts(sums: np.ndarray) -> np.ndarray:
    """Micro F1 = 2 tp / (n_pred + n_gold); nothing predicted and nothing to find counts as perfect."""
    tp, n_pred, n_gold = sums[..., 0], sums[..., 1], sums[..., 2]
    denom = n_pred + n_gold
    return np.asarray(np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1e-12), 1.0), dtype=np.float64)


def mean_of_first(sums: np.ndarray) -> np.ndarray:
    """Column 0 holds the per-item value, column 1 a constant 1 (the weight)."""
    return np.asarray(sums[..., 0] / np.maximum(sums[..., 1], 1e-12), dtype=np.float64)


def _macro_f1(n_labels: int) -> Callable[[np.ndarray], np.ndarray]:
    def aggregate(sums: np.ndarray) -> np.ndarray:
        gold, pred, tp = (sums[..., i * n_labels:(i + 1) * n_labels] for i in range(3))
        denom = gold + pred
        active = denom > 0  # a label neither in gold nor predicted carries no information
        per_label = np.where(active, 2.0 * tp / np.maximum(denom, 1e-12), 0.0)
        return np.asarray(per_label.sum(axis=-1) / np.maximum(active.sum(axis=-1), 1), dtype=np.float64)
    return aggregate


def _per_item(values: Sequence[float]) -> np.ndarray:
    column = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    return np.hstack([column, np.ones_like(column)])


# ---- measures per metric ----

def entity_measures(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> list[Measure]:
    exact, tokens = [], []
    for gold, pred in zip(golds, preds, strict=True):
        gold_set = {s for s in (normalize_answer(g) for g in gold) if s}
        pred_set = {s for s in (normalize_answer(p) for p in pred) if s}
        exact.append((len(gold_set & pred_set), len(pred_set), len(gold_set)))
        gold_tokens = Counter(t for span in gold_set for t in span.split())
        pred_tokens = Counter(t for span in pred_set for t in span.split())
        overlap = sum((gold_tokens & pred_tokens).values())
        tokens.append((overlap, sum(pred_tokens.values()), sum(gold_tokens.values())))
    return [
        Measure("entity_f1", np.asarray(exact, dtype=np.float64).reshape(-1, 3), f1_from_counts),
        Measure("entity_token_f1", np.asarray(tokens, dtype=np.float64).reshape(-1, 3), f1_from_counts),
    ]


def label_measures(golds: Sequence[str], preds: Sequence[str | None], labels: Sequence[str]) -> list[Measure]:
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    gold_hot = np.zeros((len(golds), k))
    pred_hot = np.zeros((len(golds), k))
    for row, (gold, pred) in enumerate(zip(golds, preds, strict=True)):
        gold_hot[row, index[gold]] = 1.0
        if pred in index:  # an invalid/unseen prediction adds no predicted class
            pred_hot[row, index[pred]] = 1.0
    correct = [float(g == p) for g, p in zip(golds, preds, strict=True)]
    invalid = [float(p not in index) for p in preds]
    return [
        Measure("macro_f1", np.hstack([gold_hot, pred_hot, gold_hot * pred_hot]), _macro_f1(k)),
        Measure("accuracy", _per_item(correct), mean_of_first),
        Measure("invalid_rate", _per_item(invalid), mean_of_first),
    ]


def _best(values: Sequence[float]) -> int | None:
    """Index of the largest value, the first on ties (as numpy's argmax); None for no values."""
    return max(range(len(values)), key=values.__getitem__) if values else None


def choice_measures(golds: Sequence[str], option_logprobs: Sequence[Sequence[float]],
                    labels: Sequence[str]) -> list[Measure]:
    """macro_f1 on the argmax option, acc and acc_norm (summed log-probability over the option's
    length in characters), from each item's per-option log-probabilities in `labels` order. An
    item without scores (a failed request) counts as wrong."""
    picks, normed = [], []
    for values in option_logprobs:
        best = _best(values)
        picks.append(None if best is None else labels[best])
        norm = _best([v / max(len(label), 1) for v, label in zip(values, labels, strict=False)])
        normed.append(None if norm is None else labels[norm])
    return [
        label_measures(golds, picks, labels)[0],
        Measure("acc", _per_item([float(g == p) for g, p in zip(golds, picks, strict=True)]), mean_of_first),
        Measure("acc_norm", _per_item([float(g == p) for g, p in zip(golds, normed, strict=True)]), mean_of_first),
    ]


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer  # imports nltk (~1 s): only when a rouge_l task is scored

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure in 0-1, exactly as rouge-score computes it (stemming on)."""
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def rouge_measures(golds: Sequence[str], preds: Sequence[str]) -> list[Measure]:
    return [Measure("rouge_l", _per_item([rouge_l(g, p) for g, p in zip(golds, preds, strict=True)]),
                    mean_of_first)]


# ---- from items + raw model text ----

def parse_spans(text: str, labels: Sequence[str] | None) -> list[str]:
    """Spans of a list answer; with a label set (multi-label tasks) each span is read as a label if it can be."""
    spans = parse_entities(text)
    if not labels:
        return spans
    return list(dict.fromkeys(parse_label(span, labels) or span for span in spans))


def parse_prediction(item: EvalItem, text: str) -> Prediction:
    """What the scorer reads from a raw answer: a label (or None), a span list, or cleaned text."""
    if item.metric == "entity_f1":
        return parse_spans(text, item.labels)
    if item.metric in ("label_f1", "yes_no"):
        return parse_label(text, item.label_set)
    return text.strip()


def measures_for(items: Sequence[EvalItem], texts: Sequence[str]) -> list[Measure]:
    """All measures of one task (main first) from its items and the raw model answers."""
    if not items:
        raise ValueError("no items to score")
    metric = items[0].metric
    if metric == "entity_f1":
        labels = items[0].labels
        return entity_measures([i.gold_entities for i in items], [parse_spans(t, labels) for t in texts])
    if metric in ("label_f1", "yes_no"):
        labels = items[0].label_set
        return label_measures([i.gold_label for i in items], [parse_label(t, labels) for t in texts], labels)
    return rouge_measures([str(i.output) for i in items], [t.strip() for t in texts])


# ---- bootstrap ----

def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def _weights(n: int, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Resample weights in chunks: row r counts how often each item was drawn in resample r."""
    for start in range(0, resamples, _CHUNK):
        rows = min(_CHUNK, resamples - start)
        drawn = rng.integers(0, n, size=(rows, n))  # item indices, with replacement
        flat = (np.arange(rows)[:, None] * n + drawn).ravel()
        yield np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap(measures: Sequence[Measure], *, resamples: int = RESAMPLES, seed: int = 0,
              key: str = "") -> dict[str, np.ndarray]:
    """Bootstrap samples (0-1) of every measure, all drawn from the same item resamples."""
    n = measures[0].features.shape[0]
    out: dict[str, list[np.ndarray]] = {m.name: [] for m in measures}
    for weights in _weights(n, resamples, _rng(seed, key)):
        for measure in measures:
            out[measure.name].append(measure.aggregate(weights @ measure.features))
    return {name: np.concatenate(chunks) for name, chunks in out.items()}


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def score_measures(measures: Sequence[Measure], *, key: str, resamples: int = RESAMPLES,
                   seed: int = 0) -> list[Score]:
    """Each measure in percent with a 95% percentile-bootstrap CI; `key` (the task name) fixes the
    resamples, so every model scored on the same items gets the same ones."""
    samples = bootstrap(measures, resamples=resamples, seed=seed, key=key)
    n = measures[0].features.shape[0]
    scores = []
    for measure in measures:
        percent = samples[measure.name] * 100.0
        low, high = _interval(percent)
        scores.append(Score(measure.name, measure.value() * 100.0, low, high, n, percent))
    return scores


def score_task(items: Sequence[EvalItem], texts: Sequence[str], *, resamples: int = RESAMPLES,
               seed: int = 0) -> list[Score]:
    """Main and secondary scores of one task, in percent, each with a 95% percentile-bootstrap CI."""
    return score_measures(measures_for(items, texts), key=items[0].task, resamples=resamples, seed=seed)


def score_choice_task(items: Sequence[EvalItem], option_logprobs: Sequence[Sequence[float]], *,
                      resamples: int = RESAMPLES, seed: int = 0) -> list[Score]:
    """macro_f1, acc and acc_norm of a label task scored by log-likelihood (see choice_measures)."""
    labels = items[0].label_set
    measures = choice_measures([i.gold_label for i in items], option_logprobs, labels)
    return score_measures(measures, key=items[0].task, resamples=resamples, seed=seed)


def paired_difference(a: Score, b: Score) -> Score:
    """a minus b with the CI of the per-resample differences: a paired bootstrap, valid because both
    were resampled with the same item draws (same task key, seed and item count)."""
    if a.samples.shape != b.samples.shape or a.n != b.n:
        raise ValueError(f"scores of {a.measure} are not paired (n {a.n} vs {b.n})")
    diff = a.samples - b.samples
    low, high = _interval(diff)
    return Score(a.measure, a.value - b.value, low, high, a.n, diff)


def macro_average(main_scores: Sequence[Score]) -> Score:
    """Mean of the tasks' main scores; CI from the mean of their bootstrap samples. n = number of tasks."""
    if not main_scores:
        raise ValueError("no task scores to average")
    samples = np.mean(np.vstack([s.samples for s in main_scores]), axis=0)
    low, high = _interval(samples)
    value = float(np.mean([s.value for s in main_scores]))
    return Score("macro_main", value, low, high, len(main_scores), samples)
