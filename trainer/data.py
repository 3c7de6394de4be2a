"""SFT dataset: strict JSONL of `SFTRecord`s -> a TRL prompt/completion `datasets.Dataset`.

prompt     = the Alpaca template (`selfspec/prompts/alpaca.jinja`) rendered with instruction and input
completion = the record's output + the tokenizer's EOS token

TRL's `SFTTrainer` tokenizes prompt and prompt+completion and builds labels that are -100 over the
prompt, so the loss is computed on the response (and its EOS) only.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from selfspec.errors import InputFileError
from selfspec.files import file_sha256
from selfspec.jsonl import iter_jsonl_lines, read_jsonl
from selfspec.prompts import render
from selfspec.types import SFTRecord

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

PROMPT_NAME = "alpaca"


def dataset_sha256(path: Path) -> str:
    """Hex sha256 of the dataset file's bytes: the identity an adapter is trained from."""
    return file_sha256(path)


def load_sft_records(path: Path) -> list[SFTRecord]:
    """Read and validate every line; the first bad line raises `InputFileError` naming file:line."""
    path = Path(path)
    records = read_jsonl(path, SFTRecord)
    line_numbers = [number for number, _ in iter_jsonl_lines(path)]
    for record, number in zip(records, line_numbers, strict=True):
        if not record.instruction.strip():
            raise InputFileError(str(path), number, "field 'instruction': must not be blank")
        if not record.output.strip():
            raise InputFileError(str(path), number, "field 'output': must not be blank")
    return records


def render_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt, ending with '### Response:\\n' (the completion follows directly)."""
    return render(PROMPT_NAME, instruction=instruction, input=input_text)


def build_dataset(records: list[SFTRecord], *, eos_token: str, expected_round: int | None = None) -> Dataset:
    """TRL prompt/completion dataset; the completion carries the EOS token so the model learns to stop."""
    from datasets import Dataset

    if not eos_token:
        raise ValueError("eos_token must not be empty")
    if expected_round is not None:
        rounds = Counter(r.round for r in records)
        if set(rounds) != {expected_round}:
            log.warning("dataset rounds %s differ from the adapter's round %d", dict(rounds), expected_round)
    prompts = [render_prompt(r.instruction, r.input) for r in records]
    completions = [r.output if r.output.endswith(eos_token) else r.output + eos_token for r in records]
    return Dataset.from_dict({"prompt": prompts, "completion": completions})
