from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.execution import services
from selfspec.corpus import CsvColumns, checked_corpus, iter_corpus
from selfspec.errors import InputFileError
from selfspec.types import Document


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def test_iter_corpus_reads_jsonl_ignoring_extra_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", '{"id": "a", "title": "T", "text": "x", "pmid": "1"}\n\n{"id": "b", "text": "y"}\n')
    docs = list(iter_corpus(path))
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "T", "x"), ("b", "", "y")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "invalid JSON"),
        ('{"title": "t", "text": "x"}', "field 'id': Field required"),
        ('{"id": "a", "text": ""}', "field 'text'"),
        ('["a", "b"]', "expected a JSON object"),
    ],
)
def test_iter_corpus_bad_jsonl_line_raises_with_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "c.jsonl", '{"id": "ok", "text": "x"}\n' + line + "\n")
    with pytest.raises(InputFileError) as caught:
        list(iter_corpus(path))
    assert caught.value.line == 2 and caught.value.path == str(path)
    assert reason in caught.value.reason
    assert f"{path}:2:" in str(caught.value)


def test_iter_corpus_skip_mode_collects_reasons_and_keeps_good_lines(tmp_path: Path) -> None:
    content = b'{"id": "a", "text": "x"}\n{"id": "b"}\n\xff\xfe oops\n{"id": "a", "text": "again"}\n{"id": "c", "text": "z"}\n'
    path = _write(tmp_path / "c.jsonl", content)
    skipped: list[InputFileError] = []
    docs = list(iter_corpus(path, skipped=skipped))
    assert [d.id for d in docs] == ["a", "c"]
    assert [(e.line, e.reason.split(" (")[0]) for e in skipped] == [
        (2, "field 'text': Field required"),
        (3, "not valid UTF-8"),
        (4, "duplicate id 'a'"),
    ]


def test_iter_corpus_non_utf8_jsonl_raises_naming_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", b'{"id": "a", "text": "x"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match=r"c\.jsonl:2: not valid UTF-8"):
        list(iter_corpus(path))


def test_iter_corpus_reads_folder_of_text_files(tmp_path: Path) -> None:
    _write(tmp_path / "docs" / "b.md", "# Heading here\n\nBody of b.\n")
    _write(tmp_path / "docs" / "sub" / "a.txt", "First line title\nrest of a\n")
    _write(tmp_path / "docs" / "one.txt", "only line\n")
    _write(tmp_path / "docs" / "ignored.json", "{}")
    docs = {d.id: d for d in iter_corpus(tmp_path / "docs")}
    assert set(docs) == {"b.md", "one.txt", "sub/a.txt"}
    assert (docs["b.md"].title, docs["b.md"].text) == ("Heading here", "Body of b.")
    assert (docs["sub/a.txt"].title, docs["sub/a.txt"].text) == ("First line title", "rest of a")
    assert docs["one.txt"].text == "only line"


def test_iter_corpus_folder_reports_non_utf8_and_empty_files(tmp_path: Path) -> None:
    _write(tmp_path / "good.txt", "Title\ntext")
    _write(tmp_path / "latin1.txt", b"Title\nline two caf\xe9\n")
    _write(tmp_path / "empty.md", "  \n")
    skipped: list[InputFileError] = []
    assert [d.id for d in iter_corpus(tmp_path, skipped=skipped)] == ["good.txt"]
    reasons = {Path(e.path).name: (e.line, e.reason) for e in skipped}
    assert reasons["empty.md"] == (None, "empty file")
    assert reasons["latin1.txt"][0] == 2 and "not valid UTF-8" in reasons["latin1.txt"][1]


def test_iter_corpus_reads_csv_with_named_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", 'doc,heading,body\nd1,"A, title","text, with ""quotes"""\nd2,,plain\n')
    docs = list(iter_corpus(path, columns=CsvColumns(id="doc", title="heading", text="body")))
    assert [(d.id, d.title, d.text) for d in docs] == [("d1", "A, title", 'text, with "quotes"'), ("d2", "", "plain")]


def test_iter_corpus_csv_without_title_column_and_tsv(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.tsv", "id\ttext\nx\thello\n")
    assert [(d.id, d.title, d.text) for d in iter_corpus(path)] == [("x", "", "hello")]


def test_iter_corpus_csv_missing_column_names_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "id,body\n1,x\n")
    with pytest.raises(InputFileError, match=r"c\.csv:1: missing column 'text' \(columns: id, body\)"):
        list(iter_corpus(path))


def test_iter_corpus_csv_short_row_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "id,title,text\n1,t,x\n2,t\n")
    skipped: list[InputFileError] = []
    assert [d.id for d in iter_corpus(path, skipped=skipped)] == ["1"]
    assert skipped[0].line == 3 and "field 'text'" in skipped[0].reason


def test_iter_corpus_non_utf8_csv_is_refused_with_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", b"id,text\n1,ok\n2,caf\xe9\n")
    with pytest.raises(InputFileError, match=r"c\.csv:3: not valid UTF-8 \(byte 0xe9\)"):
        list(iter_corpus(path, skipped=[]))


@pytest.mark.parametrize(("name", "reason"), [("c.parquet", "unsupported corpus format"), ("missing.jsonl", "no such")])
def test_iter_corpus_refuses_unknown_or_missing_paths(tmp_path: Path, name: str, reason: str) -> None:
    if name.endswith("parquet"):
        _write(tmp_path / name, b"PAR1")
    with pytest.raises(InputFileError, match=reason):
        list(iter_corpus(tmp_path / name))


class _RecordingIndex:
    """A retriever that keeps what is written to it."""

    def __init__(self) -> None:
        self.docs: list[str] = []

    async def add_documents(self, documents: list[Document]) -> int:
        self.docs += [d.id for d in documents]
        return len(documents)

    async def count(self) -> int:
        return len(self.docs)


async def test_corpus_import_checks_every_record_before_writing_any(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "INDEX_BATCH", 2)  # several commits would come before the bad line
    lines = [f'{{"id": "d{i}", "text": "document {i}"}}' for i in range(5)]
    lines += ['{"id": "d5", "text": ""}', '{"id": "d6", "text": "after the bad one"}']
    path = _write(tmp_path / "corpus.jsonl", "\n".join(lines) + "\n")
    index = _RecordingIndex()
    with pytest.raises(InputFileError, match=rf"^{re.escape(str(path))}:6: ") as caught:
        await services.ensure_index(index, path)  # type: ignore[arg-type]
    assert caught.value.line == 6 and index.docs == []
    path.write_text("\n".join(lines[:5] + lines[6:]) + "\n", encoding="utf-8")
    assert await services.ensure_index(index, path) == 6  # type: ignore[arg-type]
    assert [d.id for d in checked_corpus(path)] == index.docs
