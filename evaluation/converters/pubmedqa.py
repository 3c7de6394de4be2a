"""PubMedQA-style JSON (question + contexts + final_decision) -> yes/no/maybe task (yes_no).

Accepted layouts: the original `{"<pmid>": {"QUESTION", "CONTEXTS", "final_decision", ...}}` object,
a JSON list of records, a single record, or (`.jsonl` files) one record per line. Records may use the Hugging Face field names
(`pubid`, `question`, `context: {"contexts": [...]}`, `final_decision`). Unlabelled records raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.converters import instructions
from evaluation.converters.common import ConvertOptions
from evaluation.schema import YES_NO_LABELS, EvalItem
from selfspec.errors import InputFileError
from selfspec.jsonl import iter_jsonl_lines


def _records(path: Path) -> Iterator[tuple[str, int | None, dict[str, Any]]]:
    """(fallback id, line, record) for each record, whatever the layout."""
    if path.suffix == ".jsonl":
        for number, line in iter_jsonl_lines(path):
            try:
                yield str(number), number, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputFileError(str(path), number, f"invalid JSON: {err.msg}") from err
        return
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputFileError(str(path), err.lineno, f"invalid JSON: {err.msg}") from err
    if isinstance(payload, dict) and _field(payload, "QUESTION", "question") is not None:
        yield "1", None, payload
    elif isinstance(payload, dict):
        for key, record in payload.items():
            yield str(key), None, record
    elif isinstance(payload, list):
        for index, record in enumerate(payload, start=1):
            yield str(index), None, record
    else:
        raise InputFileError(str(path), None, "expected a JSON object, a JSON list or JSONL")


def _field(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def _contexts(record: dict[str, Any]) -> list[str]:
    value = _field(record, "CONTEXTS", "contexts", "context")
    if isinstance(value, dict):
        value = _field(value, "contexts", "CONTEXTS")
    if isinstance(value, str):
        value = [value]
    return [c.strip() for c in value or () if isinstance(c, str) and c.strip()]


def convert_pubmedqa(src: Path, options: ConvertOptions) -> dict[str, list[EvalItem]]:
    if not src.is_file():
        raise InputFileError(str(src), None, "PubMedQA file not found")
    name = options.task or "pubmedqa"
    items: list[EvalItem] = []
    for fallback_id, line, record in _records(src):
        where = f"record {fallback_id!r}"
        if not isinstance(record, dict):
            raise InputFileError(str(src), line, f"{where}: expected a JSON object")
        question = _field(record, "QUESTION", "question")
        decision = str(_field(record, "final_decision", "FINAL_DECISION", "answer") or "").strip().lower()
        contexts = _contexts(record)
        if not isinstance(question, str) or not question.strip() or not contexts:
            raise InputFileError(str(src), line, f"{where}: needs a question and at least one context")
        if decision not in YES_NO_LABELS:
            raise InputFileError(str(src), line, f"{where}: final_decision {decision!r} is not yes/no/maybe")
        record_id = str(_field(record, "pubid", "PMID", "id") or fallback_id)
        items.append(EvalItem(
            id=f"{name}-{record_id}", task=name, instruction=instructions.PUBMEDQA,
            input=f"Context: {' '.join(contexts)} Question: {question.strip()}",
            output=decision, metric="yes_no", labels=YES_NO_LABELS,
        ))
    if not items:
        raise InputFileError(str(src), None, "no records")
    return {name: items}
