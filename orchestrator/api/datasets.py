"""A round's dataset as JSONL lines, produced from the store exactly as `export_round` writes its files.

Streaming from the store (not the exported file) means a download works mid-run too (a snapshot of
the samples committed so far) and can never be stale; once the round is exported the bytes are equal.
Like the export, it honours the review: rejected samples left out, restored ones in, edits applied.
"""

from __future__ import annotations

from collections.abc import Iterator

from orchestrator.execution.review import dataset_samples
from orchestrator.pipeline.records import dataset_line
from orchestrator.store import RunStore


def iter_dataset(store: RunStore, run_id: str, round: int, fmt: str) -> Iterator[bytes]:
    batch: list[str] = []
    for sample in dataset_samples(store, run_id, round):
        batch.append(dataset_line(sample, fmt))
        if len(batch) >= 200:
            yield "".join(batch).encode("utf-8")
            batch = []
    if batch:
        yield "".join(batch).encode("utf-8")
