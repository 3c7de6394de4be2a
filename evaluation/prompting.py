"""Evaluation prompts: Alpaca for zero-shot, `prompts/kshot.jinja` for k-shot, and decoding settings."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment

from evaluation.schema import EvalItem, Metric
from selfspec.prompts import render, template_environment
from selfspec.types import SamplingParams

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
STOP: tuple[str, ...] = ("\n###", "\n\n###")
# Answers are short: a label, a span list or one summary sentence. Greedy decoding everywhere.
MAX_TOKENS: dict[Metric, int] = {"label_f1": 16, "yes_no": 16, "entity_f1": 96, "rouge_l": 128}


def _environment() -> Environment:
    return template_environment(PROMPTS_DIR)


def sampling_params(metric: Metric) -> SamplingParams:
    return SamplingParams(max_tokens=MAX_TOKENS[metric], temperature=0.0, top_p=1.0, stop=STOP)


def choose_demos(item: EvalItem, pool: Sequence[EvalItem], k: int, *, seed: int) -> list[EvalItem]:
    """k demonstrations from the item's own task file, never the item itself (nor a copy of its input).

    The draw depends only on (seed, task, item id), so it is the same across runs, models and resumes.
    """
    if k <= 0:
        return []

    def allowed(demo: EvalItem) -> bool:
        return demo.id != item.id and (not item.input or demo.input != item.input)

    rng = random.Random(f"{seed}:{item.task}:{item.id}")
    # Draw a few spare indices so the usual case never scans the whole pool (O(k), not O(n)).
    drawn = [pool[i] for i in rng.sample(range(len(pool)), min(len(pool), k + 4))]
    chosen = [demo for demo in drawn if allowed(demo)][:k]
    if len(chosen) < k:
        candidates = [demo for demo in pool if allowed(demo)]
        chosen = rng.sample(candidates, min(k, len(candidates)))
    return chosen


def build_prompt(item: EvalItem, demos: Sequence[EvalItem]) -> str:
    """Zero-shot: the Alpaca template. k-shot: the instruction once, then solved input/response pairs,
    ending in the same `### Input: ... ### Response:` shape an Alpaca-trained adapter has seen."""
    if not demos:
        return render("alpaca", instruction=item.instruction, input=item.input)
    shown = [{"input": d.input, "output": d.answer_text()} for d in demos]
    return _environment().get_template("kshot.jinja").render(
        instruction=item.instruction, input=item.input, demos=shown,
    )


def prompt_sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def clean_completion(text: str) -> str:
    """Drop anything from a leaked section marker on (a backend that ignored `stop`) and trim."""
    cut = text.find("###")
    return (text if cut < 0 else text[:cut]).strip()
