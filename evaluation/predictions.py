"""Per-item predictions, one JSONL file per (model, task, shots, scoring mode), appended as answers arrive.

A rerun with the same out dir resumes: items whose record exists with the same prompt hash are
skipped; records for a changed prompt (other demos, edited instruction) are dropped and redone.
A torn last line (killed mid-write) is dropped with a warning.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ConfigDict, ValidationError

from selfspec.jsonl import write_jsonl

log = logging.getLogger(__name__)


class PredictionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    model: str
    task: str
    shots: int
    prompt_sha: str
    prediction: str
    parsed: str | list[str] | None = None
    gold: str | list[str]
    finish_reason: str = ""
    option_logprobs: list[float] | None = None  # choice scoring: summed log-probability per label


def safe_name(name: str) -> str:
    """A model/task name as one path component ("org/model:r1" -> "org_model_r1")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"


def predictions_path(out_dir: Path, *, model: str, task: str, shots: int, scoring: str = "generate") -> Path:
    """`<task>.<k>shot.jsonl` for generated answers (the name runs before scoring modes wrote), else
    `<task>.<k>shot.<scoring>.jsonl`."""
    suffix = "" if scoring == "generate" else f".{safe_name(scoring)}"
    return out_dir / "predictions" / safe_name(model) / f"{safe_name(task)}.{shots}shot{suffix}.jsonl"


def _read_records(path: Path) -> list[PredictionRecord]:
    records: list[PredictionRecord] = []
    # Decoded leniently: a line torn inside a multi-byte character must not hide the lines before it.
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            records.append(PredictionRecord.model_validate(json.loads(text)))
        except (json.JSONDecodeError, ValidationError) as err:
            log.warning("%s:%d: unreadable prediction dropped (%s); it will be redone", path, number,
                        type(err).__name__)
    return records


class PredictionLog:
    """The records of one file; `append` writes and flushes one line at a time."""

    def __init__(self, path: Path, expected_sha: dict[str, str]) -> None:
        self.path = path
        self.records: dict[str, PredictionRecord] = {}
        self._handle: IO[str] | None = None
        if path.is_file():
            loaded = _read_records(path)
            # Drop answers to a prompt that has changed; keep ids not asked now (a smaller max_items).
            kept = [r for r in loaded if expected_sha.get(r.id, r.prompt_sha) == r.prompt_sha]
            self.records = {r.id: r for r in kept}
            if len(self.records) != len(loaded):
                log.info("%s: %d stale or duplicate records dropped", path, len(loaded) - len(self.records))
                kept_rows: list[BaseModel] = list(self.records.values())
                write_jsonl(path, kept_rows)

    def done(self, item_id: str) -> bool:
        """Answered; a record of a failed call (finish_reason "error...") is redone on the next run."""
        record = self.records.get(item_id)
        return record is not None and not record.finish_reason.startswith("error")

    def append(self, record: PredictionRecord) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # closed in close()
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()
        self.records[record.id] = record

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
