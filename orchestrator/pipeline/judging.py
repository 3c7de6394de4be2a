"""The optional judge stage: an OpenAI-compatible chat endpoint rates each sample 1-10.

Off unless `[gates] judge_url` is set. The reply is parsed defensively: a score written 'N/10' or
'N out of 10' wins, else the first number, which must lie in 1-10; anything else is unparsed, and
`judge_unparsed` says whether such a sample is kept (counted as judge_unparsed_kept) or gated.
"""

from __future__ import annotations

import re

from orchestrator.pipeline.gates import JUDGE_UNPARSED_KEPT, GateVerdict
from selfspec.clients.protocols import Generator
from selfspec.prompts import render
from selfspec.settings import GatesSection
from selfspec.types import SamplingParams

PROMPT_NAME = "judge"
_OUT_OF_TEN = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.I)
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


def parse_score(reply: str) -> float | None:
    """The 1-10 score in a judge's reply, or None."""
    match = _OUT_OF_TEN.search(reply) or _NUMBER.search(reply)
    if match is None:
        return None
    score = float(match.group(1) if match.re is _OUT_OF_TEN else match.group(0))
    return score if 1.0 <= score <= 10.0 else None


def judge_verdict(reply: str, config: GatesSection) -> GateVerdict:
    """ok, judge_low, judge_unparsed (gated), or ok noted as judge_unparsed_kept."""
    score = parse_score(reply)
    shown = " ".join(reply.split())[:80]
    if score is None:
        status = "judge_unparsed" if config.judge_unparsed == "drop" else "ok"
        return GateVerdict(status, f"{JUDGE_UNPARSED_KEPT if status == 'ok' else 'judge_unparsed'}: {shown!r}")
    if score < config.judge_threshold:
        return GateVerdict("judge_low", f"judge score {score:g} < {config.judge_threshold:g}")
    return GateVerdict("ok", "")


async def judge_sample(judge: Generator, *, config: GatesSection, domain: str, instruction: str, input_text: str,
                       response: str) -> GateVerdict:
    """Ask the judge endpoint (greedy, short reply) and turn its answer into a verdict."""
    prompt = render(PROMPT_NAME, domain=domain, instruction=instruction, input=input_text, response=response)
    params = SamplingParams(max_tokens=config.judge_max_tokens, temperature=0.0)
    completion = await judge.chat([{"role": "user", "content": prompt}], model=config.judge_model, params=params)
    return judge_verdict(completion.text, config)
