"""Corpus import: JSONL, CSV/TSV or a folder of .txt/.md files, streamed as `Document`s.

Every bad record is an `InputFileError` naming file:line. By default the first one raises; pass a
`skipped` list to skip bad records instead and collect the reasons (`selfspec index` prints them).
An import that writes as it reads takes `checked_corpus`: every record is validated before the first
document is handed out, so a bad record on line N leaves the index as it was.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import ConfigDict, ValidationError

from selfspec.errors import InputFileError
from selfspec.jsonl import describe_validation_error, parse_line
from selfspec.types import Document

JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
TEXT_SUFFIXES = {".txt", ".md"}


class CorpusRecord(Document):
    """A corpus record may carry more than we index (pmid, source...): extra keys are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


@dataclass(frozen=True)
class CsvColumns:
    id: str = "id"
    title: str = "title"
    text: str = "text"


def iter_corpus(
    path: Path,
    *,
    skipped: list[InputFileError] | None = None,
    columns: CsvColumns = CsvColumns(),
) -> Iterator[Document]:
    """Yield the documents of a corpus file or folder; ids must be unique across it."""
    path = Path(path)
    if path.is_dir():
        records = _iter_folder(path)
    elif not path.is_file():
        raise InputFileError(str(path), None, "no such file or folder")
    elif path.suffix.lower() in JSONL_SUFFIXES:
        records = _iter_jsonl(path)
    elif path.suffix.lower() in CSV_DELIMITERS:
        records = _iter_csv(path, columns, CSV_DELIMITERS[path.suffix.lower()])
    else:
        raise InputFileError(str(path), None, "unsupported corpus format: use .jsonl, .csv, .tsv or a folder")
    seen: dict[str, str] = {}
    for where, make in records:
        try:
            doc = make()
            if doc.id in seen:
                raise InputFileError(where[0], where[1], f"duplicate id {doc.id!r} (first at {seen[doc.id]})")
        except InputFileError as err:
            if skipped is None:
                raise
            skipped.append(err)
            continue
        seen[doc.id] = f"{where[0]}:{where[1]}" if where[1] is not None else where[0]
        yield doc


def checked_corpus(path: Path, *, columns: CsvColumns = CsvColumns()) -> Iterator[Document]:
    """The documents of a corpus, after a first pass has validated all of them (ids unique included):
    the first bad record raises its `InputFileError` here, before anything could be written. The second
    pass streams, so a large corpus is never held in memory."""
    for _ in iter_corpus(path, columns=columns):
        pass
    return iter_corpus(path, columns=columns)


# Each reader yields ((file, line), thunk); the thunk builds the Document or raises InputFileError,
# so one loop above decides between raising and skipping for every format.
_Record = tuple[tuple[str, int | None], Callable[[], Document]]


def _iter_jsonl(path: Path) -> Iterator[_Record]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield (str(path), number), partial(_jsonl_record, path, number, raw)


def _jsonl_record(path: Path, number: int, raw: bytes) -> Document:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(str(path), number, f"not valid UTF-8 (byte {raw[err.start]:#04x})") from err
    record = parse_line(path, number, text.strip(), CorpusRecord)
    return Document(id=record.id, title=record.title, text=record.text)


def _iter_csv(path: Path, columns: CsvColumns, delimiter: str) -> Iterator[_Record]:
    # CSV records may span lines, so a bad byte cannot be skipped line by line: the file is refused.
    content = _decode_file(path)
    reader = csv.DictReader(content.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise InputFileError(str(path), 1, f"bad CSV header: {err}") from err
    for needed in (columns.id, columns.text):
        if needed not in header:
            raise InputFileError(str(path), 1, f"missing column {needed!r} (columns: {', '.join(header)})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputFileError(str(path), reader.line_num, f"bad CSV: {err}") from err
        # A short row leaves cells as None: treat them as empty so the error says "too short".
        fields = {"id": row.get(columns.id) or "", "title": row.get(columns.title) or "",
                  "text": row.get(columns.text) or ""}
        yield (str(path), reader.line_num), partial(_validated, path, reader.line_num, fields)


def _iter_folder(root: Path) -> Iterator[_Record]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise InputFileError(str(root), None, "no .txt or .md files in this folder")
    for file in files:
        doc_id = file.relative_to(root).as_posix()
        yield (str(file), None), partial(_text_file_record, file, doc_id)


def _text_file_record(file: Path, doc_id: str) -> Document:
    lines = _decode_file(file).strip().splitlines()
    if not lines:
        raise InputFileError(str(file), None, "empty file")
    title = lines[0].lstrip("#").strip()  # first line, a markdown heading's marks removed
    body = "\n".join(lines[1:]).strip() or title
    return _validated(file, None, {"id": doc_id, "title": title, "text": body})


def _decode_file(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputFileError(str(path), line, f"not valid UTF-8 (byte {raw[err.start]:#04x}); re-save as UTF-8") from err


def _validated(path: Path, line: int | None, fields: dict[str, str]) -> Document:
    try:
        return Document.model_validate(fields)
    except ValidationError as err:
        raise InputFileError(str(path), line, describe_validation_error(err)) from err
