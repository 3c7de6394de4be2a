"""Stage 1: instruction generation from 3-seed numbered-list prompts, and parsing of the completion."""

from __future__ import annotations

import random
import re

from orchestrator.pipeline.filtering import Candidate
from selfspec.prompts import render
from selfspec.types import SeedTask

PROMPT_NAME = "instructions"
NO_INPUT = "<noinput>"

# A label may start a line or follow other text on the same line ("4. Instruction: 4. Input: ...").
_LABEL = re.compile(r"(?:^|(?<=\s))(\d+)[ \t]*[.)][ \t]*(Instruction|Input|Output)[ \t]*:", re.M | re.I)


def pick_seeds(seeds: list[SeedTask], *, count: int, key: str) -> list[SeedTask]:
    """Deterministic per prompt key, so a resumed prompt asks for the same thing."""
    rng = random.Random(key)
    return rng.sample(seeds, min(count, len(seeds)))


def build_prompt(seeds: list[SeedTask], *, domain: str) -> str:
    return render(PROMPT_NAME, domain=domain, seeds=seeds)


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n", 1)[0].strip()


def parse_candidates(completion: str, *, first_number: int, truncated: bool) -> tuple[list[Candidate], int]:
    """Split a numbered-list continuation into (instruction, input) candidates.

    The completion continues '<first_number>. Instruction:'. Items are grouped by their number;
    each takes its first Instruction and Input paragraph ('Output:' lines and trailing prose are
    dropped: responses are generated later, grounded). Small models often leave the instruction
    line empty and put the task on the Input line; that task is then taken as the instruction.
    Returns the candidates and how many items were unusable (empty, or cut off by the token limit).
    """
    text = f"{first_number}. Instruction:{completion}"
    matches = list(_LABEL.finditer(text))
    items: dict[int, dict[str, str]] = {}
    order: list[int] = []
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        number, label = int(match.group(1)), match.group(2).lower()
        body = _first_paragraph(text[match.end(): following.start() if following else len(text)])
        if number not in items:
            items[number] = {}
            order.append(number)
        items[number].setdefault(label, body)
    candidates: list[Candidate] = []
    failures = 0
    for position, number in enumerate(order):
        fields = items[number]
        instruction = " ".join(fields.get("instruction", "").split())
        input_text = fields.get("input", "").strip()
        if input_text.lower().strip("<>() .") in ("noinput", "no input", "none", ""):
            input_text = ""
        if not instruction and input_text:
            instruction, input_text = " ".join(input_text.split()), ""
        if not instruction or (truncated and position == len(order) - 1):
            failures += 1
            continue
        candidates.append(Candidate(instruction, input_text))
    return candidates, failures
