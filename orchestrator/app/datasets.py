"""A round's dataset as JSONL lines, produced from the store exactly as `export_round` writes its files.

Streaming from the store (not the exported file) means a download works mid-run too (a snapshot of
the samples committed so far) and can never be stale; once the round is exported the bytes are equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from orchestrator.pipeline.records import build_sft_record
from orchestrator.store import RunStore
from selfspec.types import Sample


def dataset_line(sample: Sample, fmt: str) -> str:
    """One line of `<fmt>.jsonl`; must match orchestrator.pipeline.records.export_round."""
    record = build_sft_record(sample)
    if fmt == "sft":
        return record.model_dump_json() + "\n"
    if fmt == "alpaca":
        return json.dumps({"instruction": record.instruction, "input": record.input, "output": record.output}) + "\n"
    if fmt == "messages":
        return json.dumps({"messages": [m.model_dump() for m in record.messages]}) + "\n"
    raise ValueError(f"unknown dataset format {fmt!r}")


def iter_dataset(store: RunStore, run_id: str, round: int, fmt: str) -> Iterator[bytes]:
    batch: list[str] = []
    for sample in store.iter_samples(run_id, round):
        batch.append(dataset_line(sample, fmt))
        if len(batch) >= 200:
            yield "".join(batch).encode("utf-8")
            batch = []
    if batch:
        yield "".join(batch).encode("utf-8")
