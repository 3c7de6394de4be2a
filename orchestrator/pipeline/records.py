"""Stage 3: SFT records and per-round dataset export (Alpaca fields, chat messages, provenance)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from selfspec.types import ChatMessage, Sample, SFTRecord


def user_message(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def build_sft_record(sample: Sample) -> SFTRecord:
    return SFTRecord(
        id=f"{sample.id}:sft",
        run_id=sample.run_id,
        round=sample.round,
        source_sample_id=sample.id,
        instruction=sample.instruction,
        input=sample.input,
        output=sample.response,
        messages=(
            ChatMessage(role="user", content=user_message(sample.instruction, sample.input)),
            ChatMessage(role="assistant", content=sample.response),
        ),
    )


def export_round(samples: Iterable[Sample], out_dir: Path) -> dict[str, Path]:
    """Write sft.jsonl (SFTRecord), alpaca.jsonl, messages.jsonl and provenance.jsonl atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.jsonl" for name in ("sft", "alpaca", "messages", "provenance")}
    temps = {name: path.with_suffix(".jsonl.tmp") for name, path in paths.items()}
    handles = {name: open(tmp, "w", encoding="utf-8") for name, tmp in temps.items()}
    try:
        for sample in samples:
            record = build_sft_record(sample)
            handles["sft"].write(record.model_dump_json() + "\n")
            handles["alpaca"].write(json.dumps(
                {"instruction": record.instruction, "input": record.input, "output": record.output}) + "\n")
            handles["messages"].write(json.dumps(
                {"messages": [m.model_dump() for m in record.messages]}) + "\n")
            handles["provenance"].write(json.dumps({
                "sample_id": sample.id, "instruction_id": sample.instruction_id, "model": sample.model,
                "prompt_hash": sample.prompt_hash,
                "documents": [d.model_dump() for d in sample.retrieved],
            }) + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    for name, tmp in temps.items():
        tmp.replace(paths[name])
    return paths


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
