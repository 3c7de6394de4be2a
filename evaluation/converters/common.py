"""What every converter shares: item construction, seeded sub-sampling and writing task files."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluation.schema import EvalItem
from selfspec.errors import ConfigError
from selfspec.jsonl import write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """Knobs a converter may honour: a task name override and, for NER, the entity types of one task."""

    task: str | None = None
    types: tuple[str, ...] | None = None


def slug(text: str) -> str:
    """A task-name-safe lower-case slug ("NCBI-disease" -> "ncbi_disease")."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "task"


def subsample(items: Sequence[EvalItem], *, limit: int | None, seed: int) -> list[EvalItem]:
    """At most `limit` items drawn with a fixed seed, kept in source order."""
    if not limit or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def write_tasks(tasks: dict[str, list[EvalItem]], out: Path) -> list[Path]:
    """`out` ending in .jsonl is one task file (exactly one task required); otherwise a directory."""
    tasks = {name: items for name, items in tasks.items() if items}
    if not tasks:
        raise ConfigError("the source produced no items")
    if out.suffix == ".jsonl":
        if len(tasks) > 1:
            raise ConfigError(f"{out}: the source gives {len(tasks)} tasks ({', '.join(tasks)}); "
                              "pass a directory, or choose one entity type set")
        targets = {next(iter(tasks)): out}
    else:
        targets = {name: out / f"{name}.jsonl" for name in tasks}
    written = []
    for name, path in targets.items():
        write_jsonl(path, [item.model_dump(mode="json", exclude_none=True) for item in tasks[name]])
        log.info("wrote %d items of task %s to %s", len(tasks[name]), name, path)
        written.append(path)
    return written
