"""Hallmarks-of-Cancer-style per-sentence labels -> multi-label task scored as set F1 (entity_f1 + labels).

Accepted layouts:
- the original release: a directory with `text/<doc>.txt` (one sentence per line) and
  `labels/<doc>.txt` (one line; each sentence's labels follow a `<`, several joined by `AND`,
  sub-labels after `--`; nothing after `<` means no hallmark);
- a JSONL file of `{"id"?, "text", "labels": [hallmark, ...]}` sentences.
Only the 10 top-level hallmarks are kept (sub-labels fold into their hallmark).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from evaluation.converters import instructions
from evaluation.converters.common import ConvertOptions
from evaluation.normalize import normalize_answer
from evaluation.schema import EvalItem
from selfspec.errors import InputFileError
from selfspec.jsonl import iter_jsonl_lines

HALLMARKS: tuple[str, ...] = (
    "Sustaining proliferative signaling",
    "Evading growth suppressors",
    "Resisting cell death",
    "Enabling replicative immortality",
    "Inducing angiogenesis",
    "Activating invasion and metastasis",
    "Genomic instability and mutation",
    "Tumor promoting inflammation",
    "Cellular energetics",
    "Avoiding immune destruction",
)
_SPELLINGS = {normalize_answer(h): h for h in HALLMARKS} | {
    normalize_answer(alias): hallmark for alias, hallmark in (
        ("Sustaining proliferative signalling", HALLMARKS[0]),
        ("Genome instability and mutation", HALLMARKS[6]),
        ("Tumour promoting inflammation", HALLMARKS[7]),
        ("Deregulating cellular energetics", HALLMARKS[8]),
        ("Reprogramming energy metabolism", HALLMARKS[8]),
    )
}


def canonical_hallmark(label: str, *, where: str) -> str:
    main = label.split("--")[0]
    hallmark = _SPELLINGS.get(normalize_answer(main))
    if hallmark is None:
        raise InputFileError(where, None, f"unknown hallmark {main.strip()!r}")
    return hallmark


def parse_label_line(line: str, *, where: str) -> list[list[str]]:
    """The original labels line -> per-sentence hallmark lists (sub-labels folded, duplicates dropped)."""
    per_sentence = line.rstrip("\r\n").split("<")[1:]
    out = []
    for chunk in per_sentence:
        labels = [part.strip() for part in re.split(r"\bAND\b", chunk) if part.strip()]
        out.append(list(dict.fromkeys(canonical_hallmark(label, where=where) for label in labels)))
    return out


def _from_directory(src: Path) -> Iterator[tuple[str, str, list[str]]]:
    text_dir, label_dir = src / "text", src / "labels"
    if not text_dir.is_dir() or not label_dir.is_dir():
        raise InputFileError(str(src), None, "expected text/ and labels/ subdirectories")
    for label_path in sorted(p for p in label_dir.iterdir() if p.is_file()):
        text_path = text_dir / label_path.name
        if not text_path.is_file():
            raise InputFileError(str(text_path), None, "labels file without its text file")
        sentences = [s.strip() for s in text_path.read_text(encoding="utf-8").splitlines() if s.strip()]
        labels = parse_label_line(label_path.read_text(encoding="utf-8").split("\n", 1)[0], where=str(label_path))
        if len(labels) != len(sentences):
            raise InputFileError(str(label_path), 1, f"{len(labels)} label groups for {len(sentences)} sentences")
        for index, (sentence, hallmarks) in enumerate(zip(sentences, labels, strict=True), start=1):
            yield f"{label_path.stem}-{index:03d}", sentence, hallmarks


def _from_jsonl(src: Path) -> Iterator[tuple[str, str, list[str]]]:
    for number, line in iter_jsonl_lines(src):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(str(src), number, f"invalid JSON: {err.msg}") from err
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise InputFileError(str(src), number, "expected an object with a non-empty 'text'")
        raw = row.get("labels") or []
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise InputFileError(str(src), number, "'labels' must be a list of strings")
        where = f"{src}:{number}"
        hallmarks = list(dict.fromkeys(canonical_hallmark(x, where=where) for x in raw if x.strip()))
        yield str(row.get("id") or f"{number:05d}"), row["text"].strip(), hallmarks


def convert_hoc(src: Path, options: ConvertOptions) -> dict[str, list[EvalItem]]:
    rows = _from_directory(src) if src.is_dir() else _from_jsonl(src)
    name = options.task or "hoc"
    instruction = instructions.HOC.format(labels="; ".join(HALLMARKS))
    items = [
        EvalItem(id=f"{name}-{row_id}", task=name, instruction=instruction, input=sentence,
                 output=tuple(hallmarks), metric="entity_f1", labels=HALLMARKS)
        for row_id, sentence, hallmarks in rows
    ]
    if not items:
        raise InputFileError(str(src), None, "no sentences")
    return {name: items}
