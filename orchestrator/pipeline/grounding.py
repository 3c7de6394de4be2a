"""Stage 2: ground an instruction on retrieved passages and generate the response (greedy)."""

from __future__ import annotations

import random

from selfspec.prompts import render
from selfspec.types import RetrievedDoc, SeedTask

PROMPT_NAME = "response"
STOP = ("\n###", "###")


def retrieval_query(instruction: str, input_text: str) -> str:
    return f"{instruction}\n{input_text}".strip()


def pick_demos(seeds: list[SeedTask], *, count: int, key: str) -> list[SeedTask]:
    return random.Random(key).sample(seeds, min(count, len(seeds)))


def clip_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + " ..."


def build_prompt(
    *,
    domain: str,
    instruction: str,
    input_text: str,
    demos: list[SeedTask],
    passages: list[RetrievedDoc],
    passage_max_words: int,
) -> str:
    clipped = [{"title": p.title, "text": clip_words(p.text, passage_max_words)} for p in passages]
    return render(PROMPT_NAME, domain=domain, demos=demos, passages=clipped, instruction=instruction,
                  input=input_text)


def clean_response(text: str) -> str:
    for stop in STOP:
        text = text.split(stop, 1)[0]
    return text.strip()

