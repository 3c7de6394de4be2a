"""Strict JSONL reading: every bad line is reported as file:line, and nothing is returned partially."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from selfspec.errors import InputFileError
from selfspec.files import atomic_open

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "<line>"
        parts.append(f"field '{field}': {item['msg']}")
    return "; ".join(parts)


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, stripped text) for non-blank lines; non-UTF-8 bytes name their line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise InputFileError(str(path), number, f"not valid UTF-8 ({err.reason})") from err
            if text:
                yield number, text


def parse_object(path: Path, number: int, text: str) -> dict[str, Any]:
    """One line's JSON object; anything else raises InputFileError naming file:line."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(str(path), number, f"invalid JSON: {err.msg} at column {err.colno}") from err
    if not isinstance(payload, dict):
        raise InputFileError(str(path), number, "expected a JSON object")
    return payload


def parse_line(path: Path, number: int, text: str, model: type[M]) -> M:
    payload = parse_object(path, number, text)
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        raise InputFileError(str(path), number, describe_validation_error(err)) from err


def read_jsonl(path: Path, model: type[M], *, unique_ids: bool = True) -> list[M]:
    """Read and validate a whole file; the first bad line raises InputFileError."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(str(path), None, "file not found")
    items: list[M] = []
    seen: dict[str, int] = {}
    for number, text in iter_jsonl_lines(path):
        item = parse_line(path, number, text, model)
        item_id = getattr(item, "id", None)
        if unique_ids and isinstance(item_id, str):
            if item_id in seen:
                raise InputFileError(str(path), number, f"duplicate id {item_id!r} (first on line {seen[item_id]})")
            seen[item_id] = number
        items.append(item)
    if not items:
        raise InputFileError(str(path), None, "no records")
    return items


def write_jsonl(path: Path, items: Sequence[BaseModel] | Sequence[dict[str, Any]]) -> None:
    """Write atomically: a crash never leaves a half-written file under the final name."""
    with atomic_open(path) as handle:
        for item in items:
            line = item.model_dump_json() if isinstance(item, BaseModel) else json.dumps(item, ensure_ascii=False)
            handle.write(line + "\n")

