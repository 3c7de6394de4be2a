"""Stage 3: SFT records and per-round dataset export (Alpaca fields, chat messages, provenance)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path

from selfspec.files import atomic_open, replace_dir
from selfspec.types import ChatMessage, Sample, SeedTask, SFTRecord


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


def seed_record(seed: SeedTask, *, run_id: str, round: int) -> SFTRecord:
    """A human-written seed task as an SFT record (`training.mix_seeds`), marked by its `seed:` id."""
    return SFTRecord(
        id=f"seed:{seed.id}:sft", run_id=run_id, round=round, source_sample_id=f"seed:{seed.id}",
        instruction=seed.instruction, input=seed.input, output=seed.output,
        messages=(ChatMessage(role="user", content=user_message(seed.instruction, seed.input)),
                  ChatMessage(role="assistant", content=seed.output)),
    )


def write_training_set(records: Iterable[SFTRecord], out: Path) -> Path:
    """The records the adapter is trained on (screened synthetic records, plus seeds with `mix_seeds`);
    the exported dataset files stay as synthesised."""
    with atomic_open(out) as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
    return out


DATASET_FORMATS = ("sft", "alpaca", "messages", "provenance")


def dataset_line(sample: Sample, fmt: str) -> str:
    """One line of `<fmt>.jsonl` for a sample: the single definition of every export format."""
    record = build_sft_record(sample)
    if fmt == "sft":
        return record.model_dump_json() + "\n"
    if fmt == "alpaca":
        return json.dumps({"instruction": record.instruction, "input": record.input, "output": record.output}) + "\n"
    if fmt == "messages":
        return json.dumps({"messages": [m.model_dump() for m in record.messages]}) + "\n"
    if fmt == "provenance":
        return json.dumps({
            "sample_id": sample.id, "instruction_id": sample.instruction_id, "model": sample.model,
            "prompt_hash": sample.prompt_hash, "documents": [d.model_dump() for d in sample.retrieved],
        }) + "\n"
    raise ValueError(f"unknown dataset format {fmt!r}")


def export_round(samples: Iterable[Sample], out_dir: Path, *,
                 card: Callable[[int], str] | None = None) -> dict[str, Path]:
    """Write sft.jsonl (SFTRecord), alpaca.jsonl, messages.jsonl and provenance.jsonl, plus the dataset
    card `README.md` (`card(rows)` gives its text), as one unit: they are written into a temporary dir
    beside `out_dir` and swapped in whole, so a crash mid-export leaves the previous export or the new
    one, never a mix. Everything else in `out_dir` (train.jsonl) belongs to the previous export and goes."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        rows = 0
        with ExitStack() as stack:
            handles = {fmt: stack.enter_context((tmp / f"{fmt}.jsonl").open("w", encoding="utf-8"))
                       for fmt in DATASET_FORMATS}
            for sample in samples:
                rows += 1
                for fmt, handle in handles.items():
                    handle.write(dataset_line(sample, fmt))
            for handle in handles.values():
                handle.flush()
                os.fsync(handle.fileno())
        if card is not None:
            with (tmp / "README.md").open("w", encoding="utf-8") as handle:
                handle.write(card(rows))
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; other services (another user) read these files
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {fmt: out_dir / f"{fmt}.jsonl" for fmt in DATASET_FORMATS}
