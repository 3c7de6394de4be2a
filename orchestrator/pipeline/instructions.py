"""Stage 1: instruction generation from 3-seed numbered-list prompts, and parsing of the completion."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from orchestrator.pipeline.filtering import Candidate
from selfspec.prompts import render
from selfspec.types import SeedTask, Verdict

PROMPT_NAME = "instructions"
NO_INPUT = "<noinput>"

# A field label: numbered ("4. Input:", "4) instruction:") at a line start or after other text on the
# same line ("4. Instruction:4. Input: ..."), or unnumbered at a line start ("Input:", "### Response:").
# Unnumbered labels belong to the item being read. Output/Response/Answer fields are dropped.
_LABEL = re.compile(
    r"(?:^|(?<=[\s:]))(?P<number>\d{1,3})[ \t]*[.)][ \t]*\**(?P<label>Instruction|Input|Output)\**[ \t]*:\**"
    r"|^[ \t]*(?:#+[ \t]*)?\**(?P<bare>Instruction|Input|Output|Response|Answer)\**[ \t]*:\**",
    re.M | re.I,
)
# Debris that may still lead or trail a field: a list number ("1. ", "(2) "), a repeated label, a bullet.
_LEADING_NUMBER = re.compile(r"^\s*(?:\(?\d{1,3}[.)]|[-*\u2022])(?=\s)\s*")
_LEADING_LABEL = re.compile(r"^\s*\**(?:Instruction|Task|Input)\**\s*:\**\s*", re.I)
_ENUMERATED_LINE = re.compile(r"^\s*\(?\d{1,3}[.)]\s+\S", re.M)
# The next item's number left at the end: on its own line ("...\n5." / "...\n5. Instr"), or after a
# finished sentence ("Explain asthma. 5."); "chromosome 5." is content and stays.
_TRAILING = re.compile(r"(?:\n[ \t]*\d{1,3}(?:[.)][ \t]*(?:Inst\w*|Inp\w*|Outp\w*)?)?|(?<=[.?!])[ \t]+\d{1,3}[.)]?)\s*$")
_NO_INPUT = re.compile(r"[<(\[]\s*no[\s_-]*input\s*[>)\]]?|<\s*none\s*>", re.I)
_NO_INPUT_WORDS = frozenset({"", "noinput", "none", "na", "empty", "nil", "null", "noinputrequired", "notapplicable"})
_INLINE_INPUT = re.compile(r"\s\**Input\**\s*:\s*", re.I)  # "Classify the sentence. Input: The drug ..."
_INLINE_OUTPUT = re.compile(r"\s\**(?:Output|Response)\**\s*:.*$", re.I | re.S)  # an answer given too early
_LEFTOVER = re.compile(r"\b(?:Instruction|Input|Output)\s*:|\bno_?input\b", re.I)


@dataclass(frozen=True)
class Dropped:
    """An unusable list item: why (a verdict and its reason), and its text where it had one."""

    verdict: Verdict
    reason: str
    text: str = ""
    input: str = ""


def pick_seeds(seeds: list[SeedTask], *, count: int, key: str) -> list[SeedTask]:
    """Deterministic per prompt key, so a resumed prompt asks for the same thing."""
    rng = random.Random(key)
    return rng.sample(seeds, min(count, len(seeds)))


def build_prompt(seeds: list[SeedTask], *, domain: str) -> str:
    """The list up to '<n>. Instruction:', with no newline after it: a prompt ending in a newline reads
    as an empty instruction, and models then answer with '<n>. Input:' (Gemma did in 4 of 4 prompts)."""
    return render(PROMPT_NAME, domain=domain, seeds=seeds).rstrip()


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n", 1)[0].strip()


def _strip_common(text: str) -> str:
    text = _INLINE_OUTPUT.sub("", _TRAILING.sub("", text.strip()))
    return _NO_INPUT.sub(" ", text).strip()


def clean_instruction(text: str) -> str:
    """An instruction without list debris: leading numbers, labels and bullets, <noinput> marks,
    an inline answer, the next item's number; whitespace collapsed to single spaces."""
    text = _strip_common(text)
    previous = None
    while previous != text:
        previous = text
        text = _LEADING_LABEL.sub("", _LEADING_NUMBER.sub("", text, count=1), count=1)
    return " ".join(text.split())


def clean_input(text: str) -> str:
    """An input without labels, <noinput> marks or the next item's number; '' for "no input".
    Its lines and leading numbers stay: an input may itself be a list."""
    text = _strip_common(text)
    previous = None
    while previous != text:
        previous, text = text, _LEADING_LABEL.sub("", text, count=1)
    text = "\n".join(line.strip() for line in text.splitlines()).strip()
    return "" if is_no_input(text) else text


def is_no_input(text: str) -> bool:
    return re.sub(r"[^a-z]", "", text.lower()) in _NO_INPUT_WORDS


def split_enumerated(body: str) -> list[str]:
    """A bare numbered list in one field ('1. What is X?\\n2. What is Y?') is one task per number."""
    starts = [m.start() for m in _ENUMERATED_LINE.finditer(body)]
    if len(starts) < 2 or starts[0] != 0:
        return [body]
    return [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=True)]


def parse_candidates(completion: str, *, first_number: int,
                     truncated: bool) -> tuple[list[Candidate], list[Dropped]]:
    """Split a numbered-list continuation into (instruction, input) candidates.

    The completion continues '<first_number>. Instruction:'. Items are grouped by their number;
    each takes its first Instruction and Input paragraph ('Output:' lines and trailing prose are
    dropped: responses are generated later, grounded). Small models often leave the instruction
    line empty and put the task on the Input line; that task is then taken as the instruction.
    List debris (numbers, labels, <noinput>) is cleaned off; a text still carrying some is dropped.
    Returns the candidates and a `Dropped` per unusable item: empty, cut off by the token
    limit, or list debris that could not be cleaned.
    """
    text = f"{first_number}. Instruction: {completion}"
    matches = list(_LABEL.finditer(text))
    items: list[dict[str, str]] = []
    by_number: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        numbered = match.group("number") is not None
        label = (match.group("label") if numbered else match.group("bare")).lower()
        if numbered:
            current = by_number.get(int(match.group("number")))
        # A second instruction under one number (or unnumbered) is the next task, not a repeat.
        if current is None or (label == "instruction" and "instruction" in current):
            current = {}
            items.append(current)
            if numbered:
                by_number[int(match.group("number"))] = current
        body = _first_paragraph(text[match.end(): following.start() if following else len(text)])
        current.setdefault(label if label in ("instruction", "input") else "output", body)
    candidates: list[Candidate] = []
    dropped: list[Dropped] = []
    for position, fields in enumerate(items):
        if truncated and position == len(items) - 1:
            dropped.append(Dropped("parse_failure", "cut off by the token limit"))
            continue
        input_text = clean_input(fields.get("input", ""))
        tasks = [clean_instruction(part) for part in split_enumerated(fields.get("instruction", "").strip())]
        tasks = [task for task in tasks if task]
        if not tasks and input_text:
            tasks, input_text = [clean_instruction(input_text)], ""
        if not tasks:
            dropped.append(Dropped("parse_failure", "empty item"))
            continue
        if len(tasks) > 1:
            input_text = ""  # a bare list of tasks: which one an input belongs to is unknown
        elif not input_text and (inline := _INLINE_INPUT.search(tasks[0])):
            tasks, input_text = [tasks[0][: inline.start()].strip()], clean_input(tasks[0][inline.end():])
        for task in tasks:
            leftover = _LEFTOVER.search(task) or _LEFTOVER.search(input_text)
            if leftover is not None:
                dropped.append(Dropped("list_debris", f"list debris left in the text: {leftover.group(0).strip()!r}",
                                       task, input_text))
            else:
                candidates.append(Candidate(task, input_text))
    return candidates, dropped
