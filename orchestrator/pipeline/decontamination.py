"""Keep evaluation items out of training: a 13-gram screen of every round's samples before export.

The same rule as the report's contamination check (`evaluation.contamination`, GPT-3 appendix C): an
evaluation item's text (its input, or its instruction when it has none) is tokenised into lower-case
alphanumeric words; a sample that shares any n-gram with it, or contains the whole token sequence of an
item shorter than n, is held back from the training set. Held-back seed tasks (the before/after
comparison) are screened the same way, on their instruction with input, and on their output. A text of
fewer than `MIN_SHORT` words is not protected: a one-word label ("positive") in a sample is no leak.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.contamination import DEFAULT_N, ngrams, tokenize
from selfspec.types import Sample, SeedTask, SFTRecord

log = logging.getLogger(__name__)

MIN_SHORT = 5  # shorter protected texts would match any sample that uses their words


@dataclass
class Screen:
    """n-grams (and whole short sequences) of the protected texts."""

    n: int = DEFAULT_N
    grams: set[tuple[str, ...]] = field(default_factory=set)
    short: set[str] = field(default_factory=set)  # " tok tok " of texts shorter than n
    protected: int = 0

    def protect(self, text: str) -> None:
        tokens = tokenize(text)
        if len(tokens) < MIN_SHORT:
            return
        self.protected += 1
        if len(tokens) >= self.n:
            self.grams |= ngrams(tokens, self.n)
        else:
            self.short.add(" " + " ".join(tokens) + " ")

    def hits(self, text: str) -> bool:
        tokens = tokenize(text)
        if not ngrams(tokens, self.n).isdisjoint(self.grams):
            return True
        joined = " " + " ".join(tokens) + " "
        return any(short in joined for short in self.short)


def build_screen(task_files: Sequence[Path], held_out: Sequence[SeedTask], *, n: int = DEFAULT_N) -> Screen:
    from evaluation.schema import load_task_file

    screen = Screen(n=n)
    for path in task_files:
        for item in load_task_file(path):
            screen.protect(item.input or item.instruction)
    for seed in held_out:
        screen.protect(f"{seed.instruction}\n{seed.input}")
        screen.protect(seed.output)
    return screen


def screen_records(records: Iterable[SFTRecord], screen: Screen) -> tuple[list[SFTRecord], list[str]]:
    """(kept records, ids of those sharing an n-gram with a protected text)."""
    kept: list[SFTRecord] = []
    dropped: list[str] = []
    for record in records:
        if screen.hits("\n".join((record.instruction, record.input, record.output))):
            dropped.append(record.id)
        else:
            kept.append(record)
    return kept, dropped


@dataclass
class ScreenResult:
    kept: list[Sample]
    dropped: list[str]  # sample ids

    def line(self, screen: Screen, *, round: int) -> str:
        return (f"round {round} decontamination: {len(self.dropped)} of {len(self.kept) + len(self.dropped)} samples "
                f"share a {screen.n}-gram with {screen.protected} evaluation items / held-back seeds"
                + (" (held back from training)" if self.dropped else ""))


def screen_samples(samples: Iterable[Sample], screen: Screen) -> ScreenResult:
    kept: list[Sample] = []
    dropped: list[str] = []
    for sample in samples:
        text = "\n".join((sample.instruction, sample.input, sample.response))
        if screen.hits(text):
            dropped.append(sample.id)
        else:
            kept.append(sample)
    return ScreenResult(kept, dropped)
