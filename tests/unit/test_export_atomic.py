from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.pipeline import records
from orchestrator.pipeline.records import DATASET_FORMATS, export_round
from selfspec.types import DocRef, Sample


def _sample(i: int, answer: str) -> Sample:
    return Sample(id=f"r:r1:p0:{i}:s", run_id="r", round=1, instruction_id=f"r:r1:p0:{i}", instruction=f"Task {i}",
                  response=answer, retrieved=(DocRef(doc_id="d1", score=1.5),), model="m", prompt_name="response",
                  prompt_hash="h")


def test_export_round_files_appear_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "round1"
    export_round([_sample(0, "old")], out)
    before = {fmt: (out / f"{fmt}.jsonl").read_text() for fmt in DATASET_FORMATS}

    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:  # an I/O error while the 3rd file is made durable
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(5, "injected I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        export_round([_sample(0, "new"), _sample(1, "new")], out)
    monkeypatch.setattr(os, "fsync", real_fsync)

    after = {fmt: (out / f"{fmt}.jsonl").read_text() for fmt in DATASET_FORMATS}
    assert after == before  # the previous export, whole: no file of the failed one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round1"]  # no temp dir left beside it


def test_export_round_replaces_a_previous_export_whole(tmp_path: Path) -> None:
    out = tmp_path / "round1"
    export_round([_sample(0, "old")], out)
    paths = export_round([_sample(0, "new"), _sample(1, "new")], out)
    assert all(len(paths[fmt].read_text().splitlines()) == 2 for fmt in DATASET_FORMATS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round1"]
    assert records.DATASET_FORMATS == ("sft", "alpaca", "messages", "provenance")
