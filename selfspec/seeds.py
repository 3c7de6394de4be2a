"""Seed tasks: loading and validation."""

from __future__ import annotations

from pathlib import Path

from selfspec.jsonl import read_jsonl
from selfspec.types import SeedTask


def load_seeds(path: Path) -> list[SeedTask]:
    return read_jsonl(path, SeedTask)
