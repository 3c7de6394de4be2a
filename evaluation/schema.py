"""The evaluation task format: one `EvalItem` per JSONL line, one task per file (see evaluation/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from selfspec.errors import InputFileError
from selfspec.jsonl import read_jsonl

Metric = Literal["label_f1", "entity_f1", "yes_no", "rouge_l"]
METRICS: tuple[Metric, ...] = ("label_f1", "entity_f1", "yes_no", "rouge_l")
YES_NO_LABELS: tuple[str, ...] = ("yes", "no", "maybe")
NONE_ANSWER = "None"  # how an empty entity list is written in demonstrations and asked for in instructions


class EvalItem(BaseModel):
    """One test instance. `output` is a list of span strings for entity_f1, else a string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    task: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str | tuple[str, ...]
    metric: Metric
    labels: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _decode_entity_output(cls, data: Any) -> Any:
        """entity_f1 gold may also be given as a JSON-encoded list inside a string."""
        if isinstance(data, dict) and data.get("metric") == "entity_f1" and isinstance(data.get("output"), str):
            try:
                decoded = json.loads(data["output"])
            except json.JSONDecodeError as err:
                raise ValueError("entity_f1 output must be a JSON list of strings") from err
            data = {**data, "output": decoded}
        return data

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _check_output(self) -> EvalItem:
        if self.metric == "entity_f1":
            if not isinstance(self.output, tuple):
                raise ValueError("entity_f1 output must be a list of span strings")
            if any(not span.strip() for span in self.output):
                raise ValueError("entity_f1 output holds a blank span")
            return self
        if not isinstance(self.output, str) or not self.output.strip():
            raise ValueError(f"{self.metric} output must be a non-blank string")
        if self.metric == "rouge_l":
            return self
        labels = self.label_set
        if not labels:
            raise ValueError(f"{self.metric} needs a non-empty 'labels' list")
        lowered = [label.lower() for label in labels]
        if len(set(lowered)) != len(lowered):
            raise ValueError("labels must be unique (case-insensitive)")
        if self.metric == "yes_no" and not set(lowered) <= set(YES_NO_LABELS):
            raise ValueError(f"yes_no labels must be a subset of {list(YES_NO_LABELS)}")
        if self.output.strip().lower() not in lowered:
            raise ValueError(f"output {self.output!r} is not one of labels {list(labels)}")
        return self

    @property
    def label_set(self) -> tuple[str, ...]:
        """The task's labels; yes_no defaults to yes/no/maybe."""
        if self.labels is not None:
            return self.labels
        return YES_NO_LABELS if self.metric == "yes_no" else ()

    @property
    def gold_label(self) -> str:
        """The gold label spelled as in `label_set` (label_f1 and yes_no only)."""
        wanted = str(self.output).strip().lower()
        return next(label for label in self.label_set if label.lower() == wanted)

    @property
    def gold_entities(self) -> list[str]:
        return list(self.output) if isinstance(self.output, tuple) else []

    def answer_text(self) -> str:
        """The gold answer as a model should write it (used for demonstrations)."""
        if self.metric == "entity_f1":
            return "; ".join(self.gold_entities) if self.gold_entities else NONE_ANSWER
        if self.metric in ("label_f1", "yes_no"):
            return self.gold_label
        return str(self.output)


def load_task_file(path: Path) -> list[EvalItem]:
    """Read one task file; bad lines raise InputFileError(file:line), and all lines must share one task."""
    items = read_jsonl(Path(path), EvalItem)
    first = items[0]
    for item in items[1:]:
        for field in ("task", "metric", "label_set"):
            if getattr(item, field) != getattr(first, field):
                raise InputFileError(
                    str(path), None,
                    f"item {item.id!r}: {field} {getattr(item, field)!r} differs from the file's first item "
                    f"({getattr(first, field)!r}); one file holds one task",
                )
    return items


def find_task_files(paths: list[Path]) -> list[Path]:
    """Expand directories to their `*.jsonl` files (sorted); files are kept as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.jsonl") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise InputFileError(str(path), None, "no such task file or directory")
    if not found:
        raise InputFileError(", ".join(str(p) for p in paths), None, "no *.jsonl task files found")
    return found
