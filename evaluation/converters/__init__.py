"""Converters from public datasets in their original formats to the evaluation task format.

    convert("iob_ner", Path(".../BC5CDR-IOB/test.tsv"), Path("tasks/"), limit=500)
    -> [tasks/bc5cdr_chemical.jsonl, tasks/bc5cdr_disease.jsonl]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from evaluation.converters.chemprot import convert_chemprot
from evaluation.converters.common import ConvertOptions, subsample, write_tasks
from evaluation.converters.ddi import convert_ddi
from evaluation.converters.hoc import convert_hoc
from evaluation.converters.iob_ner import convert_iob_ner
from evaluation.converters.pubmedqa import convert_pubmedqa
from evaluation.schema import EvalItem
from selfspec.errors import ConfigError, InputFileError

log = logging.getLogger(__name__)

Converter = Callable[[Path, ConvertOptions], dict[str, list[EvalItem]]]
CONVERTERS: dict[str, Converter] = {
    "iob_ner": convert_iob_ner,
    "chemprot": convert_chemprot,
    "ddi": convert_ddi,
    "pubmedqa": convert_pubmedqa,
    "hoc": convert_hoc,
}
KINDS: tuple[str, ...] = tuple(CONVERTERS)


def convert_tasks(kind: str, src: Path, *, limit: int | None = None, seed: int = 0, task: str | None = None,
                  types: Sequence[str] | None = None) -> dict[str, list[EvalItem]]:
    """Convert without writing: task name -> items (sub-sampled to `limit` with `seed`)."""
    if kind not in CONVERTERS:
        raise ConfigError(f"unknown converter {kind!r}; choose one of {', '.join(KINDS)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    src = Path(src)
    if not src.exists():
        raise InputFileError(str(src), None, "source not found")
    options = ConvertOptions(task=task, types=tuple(types) if types else None)
    tasks = CONVERTERS[kind](src, options)
    return {name: subsample(items, limit=limit, seed=seed) for name, items in tasks.items()}


def convert(kind: str, src: Path, out: Path, *, limit: int | None = None, seed: int = 0,
            task: str | None = None, types: Sequence[str] | None = None) -> list[Path]:
    """Convert `src` and write task files: `out` is a .jsonl file (one task) or a directory."""
    tasks = convert_tasks(kind, src, limit=limit, seed=seed, task=task, types=types)
    return write_tasks(tasks, Path(out))


__all__ = ["CONVERTERS", "KINDS", "ConvertOptions", "convert", "convert_tasks"]
