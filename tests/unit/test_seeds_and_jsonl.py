from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfspec.errors import InputFileError
from selfspec.jsonl import read_jsonl
from selfspec.seeds import load_seeds
from selfspec.types import Document

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("ner_disease", "ner_chemical", "ner_gene", "ner_species", "ner_anatomy", "relation_drug_drug",
            "relation_chemical_protein", "yes_no_qa", "multiple_choice_qa", "factoid_qa", "document_classification",
            "drug_review_sentiment", "summarization", "nli")


def test_shipped_biomedical_seeds_cover_the_task_families() -> None:
    seeds = load_seeds(REPO / "seeds/biomedical.jsonl")
    assert len(seeds) >= 80
    tasks = {s.task for s in seeds}
    for family in FAMILIES:
        assert any(t.startswith(family) for t in tasks), family
    assert {s.domain for s in seeds} == {"biomedical"}


def test_shipped_sports_seeds_and_corpora_load() -> None:
    assert len(load_seeds(REPO / "seeds/sports.jsonl")) >= 40
    assert len(read_jsonl(REPO / "corpora/biomedical.jsonl", Document)) >= 150
    assert len(read_jsonl(REPO / "corpora/sports.jsonl", Document)) >= 100


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"id": "a", "domain": "biomedical", "task": "t", "instruction": "Do it.", "input": "", "output": "ok"})


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD, "{not json"])
    with pytest.raises(InputFileError, match=r"seeds.jsonl:2: invalid JSON"):
        load_seeds(path)


def test_missing_field_names_the_field(tmp_path: Path) -> None:
    bad = json.dumps({"id": "b", "domain": "biomedical", "task": "t", "instruction": "Do it."})
    path = _write(tmp_path, [GOOD, "", bad])
    with pytest.raises(InputFileError, match=r"seeds.jsonl:3: field 'output'"):
        load_seeds(path)


def test_unknown_field_and_blank_output_are_rejected(tmp_path: Path) -> None:
    extra = json.dumps({**json.loads(GOOD), "id": "c", "oops": 1})
    with pytest.raises(InputFileError, match=r":2: field 'oops'"):
        load_seeds(_write(tmp_path, [GOOD, extra]))
    blank = json.dumps({**json.loads(GOOD), "id": "d", "output": "   "})
    with pytest.raises(InputFileError, match=r":2: field 'output'"):
        load_seeds(_write(tmp_path, [GOOD, blank]))


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r":2: duplicate id 'a' \(first on line 1\)"):
        load_seeds(_write(tmp_path, [GOOD, GOOD]))


def test_non_utf8_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(InputFileError, match=r"seeds.jsonl:2: not valid UTF-8"):
        load_seeds(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        load_seeds(tmp_path / "nope.jsonl")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    from selfspec.files import atomic_open

    target = tmp_path / "data.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]  # no temporary left behind
    with atomic_open(target) as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n"


def test_atomic_open_temporaries_are_unique_and_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the temporary was named by pid, so two writers in one process shared (and broke) it; and
    neither the file nor its directory was fsynced before the rename counted."""
    import os

    from selfspec.files import atomic_open

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    target = tmp_path / "state.json"
    with atomic_open(target) as first:
        first.write("first")
        with atomic_open(target) as second:
            second.write("second")
        assert target.read_text(encoding="utf-8") == "second"
    assert target.read_text(encoding="utf-8") == "first"
    assert len(synced) >= 4  # each file and the directory after each rename
    with pytest.raises(RuntimeError), atomic_open(target) as broken:
        broken.write("half")
        raise RuntimeError("crash")
    assert target.read_text(encoding="utf-8") == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporaries left behind
