"""Contamination check: do eval inputs share an n-gram with a synthetic (training) dataset?

Follows the GPT-3 paper's check (Brown et al. 2020, appendix C): text is lower-cased and split into
alphanumeric tokens; an eval item is flagged when any of its n-grams (default 13) occurs in any
instruction, input or output of the dataset. An item shorter than n tokens is flagged when its
whole token sequence occurs in the dataset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.schema import EvalItem
from selfspec.jsonl import iter_jsonl_lines, parse_object

log = logging.getLogger(__name__)

DEFAULT_N = 13
TEXT_FIELDS = ("instruction", "input", "output", "response", "text")
_TOKEN = re.compile(r"[a-z0-9]+")
_EXAMPLES = 5  # flagged item ids kept per task for the report


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class ContaminationReport:
    dataset: str
    n: int
    per_task: dict[str, tuple[int, int]]  # task -> (flagged items, items)
    examples: dict[str, list[str]] = field(default_factory=dict)  # task -> first flagged item ids

    @property
    def flagged(self) -> int:
        return sum(f for f, _ in self.per_task.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.per_task.values())

    @property
    def fraction(self) -> float:
        return self.flagged / self.total if self.total else 0.0

    def line(self) -> str:
        worst = [f"{task} {f}/{t}" for task, (f, t) in self.per_task.items() if f]
        detail = f" ({', '.join(worst)})" if worst else ""
        return (f"Contamination ({self.n}-gram overlap with {self.dataset}): {self.flagged}/{self.total} eval "
                f"items ({self.fraction:.1%}) share an n-gram with the dataset{detail}.")


def dataset_texts(path: Path) -> Iterator[str]:
    """Text fields of a JSONL dataset (SFT records, samples, instructions or seeds; chat messages too)."""
    for number, line in iter_jsonl_lines(Path(path)):
        row = parse_object(Path(path), number, line)
        for key in TEXT_FIELDS:
            if isinstance(row.get(key), str) and row[key]:
                yield row[key]
        for message in row.get("messages") or ():
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                yield message["content"]


def check_contamination(texts: Iterable[str], items: Iterable[EvalItem], *, n: int = DEFAULT_N,
                        dataset: str = "dataset") -> ContaminationReport:
    """Flag eval items whose input (or instruction, when there is no input) overlaps the texts."""
    if n < 1:
        raise ValueError("n must be >= 1")
    grams: set[tuple[str, ...]] = set()
    joined: list[str] = []
    for text in texts:
        tokens = tokenize(text)
        grams |= ngrams(tokens, n)
        joined.append(" " + " ".join(tokens) + " ")
    haystack = "\n".join(joined)
    per_task: dict[str, tuple[int, int]] = {}
    examples: dict[str, list[str]] = {}
    for item in items:
        tokens = tokenize(item.input or item.instruction)
        if len(tokens) >= n:
            hit = not ngrams(tokens, n).isdisjoint(grams)
        else:
            hit = bool(tokens) and f" {' '.join(tokens)} " in haystack
        flagged, total = per_task.get(item.task, (0, 0))
        per_task[item.task] = (flagged + hit, total + 1)
        if hit and len(examples.setdefault(item.task, [])) < _EXAMPLES:
            examples[item.task].append(item.id)
    report = ContaminationReport(dataset=dataset, n=n, per_task=per_task, examples=examples)
    log.info("%s", report.line())
    return report
