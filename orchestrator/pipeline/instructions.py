"""Stage 1: instruction generation from 3-seed numbered-list prompts, and parsing of the completion."""

from __future__ import annotations

import random
import re

from orchestrator.pipeline.filtering import Candidate
from selfspec.prompts import render
from selfspec.types import SeedTask

PROMPT_NAME = "instructions"
NO_INPUT = "<noinput>"

_ITEM = re.compile(r"^\s*(\d+)\s*\.\s*Instruction\s*:", re.M | re.I)
_INPUT = re.compile(r"^\s*\d+\s*\.\s*Input\s*:", re.M | re.I)


def pick_seeds(seeds: list[SeedTask], *, count: int, key: str) -> list[SeedTask]:
    """Deterministic per prompt key, so a resumed prompt asks for the same thing."""
    rng = random.Random(key)
    return rng.sample(seeds, min(count, len(seeds)))


def build_prompt(seeds: list[SeedTask], *, domain: str) -> str:
    return render(PROMPT_NAME, domain=domain, seeds=seeds)


def parse_candidates(completion: str, *, first_number: int, truncated: bool) -> tuple[list[Candidate], int]:
    """Split a numbered-list continuation into (instruction, input) candidates.

    Returns the candidates and how many blocks were unusable (no input line, empty, or cut off by
    the token limit).
    """
    text = f"{first_number}. Instruction:{completion}"
    starts = [m.start() for m in _ITEM.finditer(text)]
    blocks = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    candidates: list[Candidate] = []
    failures = 0
    for position, block in enumerate(blocks):
        body = _ITEM.sub("", block, count=1)
        parts = _INPUT.split(body, maxsplit=1)
        is_last = position == len(blocks) - 1
        if len(parts) != 2 or (is_last and truncated):
            failures += 1
            continue
        instruction = " ".join(parts[0].split())
        input_text = parts[1].strip()
        # The model may run on into prose after the input; keep the first paragraph only.
        input_text = input_text.split("\n\n", 1)[0].strip()
        if input_text.lower().strip("<>() .") in ("noinput", "no input", "none", ""):
            input_text = ""
        if not instruction:
            failures += 1
            continue
        candidates.append(Candidate(instruction, input_text))
    return candidates, failures
