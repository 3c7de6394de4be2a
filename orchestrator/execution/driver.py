"""A whole run: round 1 -> export -> train r1 -> hot-load r1 -> round 2 -> export -> train r2.

Every phase is idempotent, so `execute()` on a half-finished run picks up where it stopped:
synthesis resumes from the store, exports are rewritten from the store, training returns the
existing adapter when its dataset hash matches, and a load of an already-loaded adapter is accepted.
With `rounds.review`, a round's synthesis is followed by a pause (status `awaiting_review`, the
execution ends) until the round is approved (orchestrator/execution/review.py); executing again then goes on
from its export, which leaves out what the reviewer rejected and takes their edits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from orchestrator.execution.circuit import Circuit
from orchestrator.execution.review import export_reviewed_round, review_counts, round_approved, sample_rounds
from orchestrator.execution.round_card import write_round_card
from orchestrator.execution.runner import ProgressSink, RoundResult, RoundRunner, RoundSpec
from orchestrator.pipeline.decontamination import Screen, build_screen, screen_records
from orchestrator.pipeline.filtering import InstructionFilter
from orchestrator.pipeline.records import seed_record, write_training_set
from orchestrator.store import RunStore
from selfspec.adapters import validate_adapter_name
from selfspec.clients.protocols import Generator, Retriever
from selfspec.errors import AdapterConflict, AdapterError, ConfigError, SelfSpecError
from selfspec.settings import RunConfig
from selfspec.types import AdapterRef, SamplingParams, SeedTask

log = logging.getLogger(__name__)

AWAITING_REVIEW = "awaiting_review"  # run status while a round waits for its review's approval


class AdapterTrainer(Protocol):
    """Turns a round's SFT file into an adapter (local subprocess, or the trainer service)."""

    async def train_adapter(self, *, dataset: Path, name: str, round: int, run_id: str,
                            init_adapter: Path | None) -> AdapterRef: ...


class ServingGenerator(Generator, Protocol):
    """The run's generator: it also hot-loads each round's adapter."""

    async def load_adapter(self, name: str, path: str) -> None: ...


@dataclass
class RunSummary:
    run_id: str
    rounds: dict[int, RoundResult] = field(default_factory=dict)
    adapters: dict[int, AdapterRef] = field(default_factory=dict)
    datasets: dict[int, Path] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the summary (decontamination)
    awaiting_review: int | None = None  # the round the run paused after (`rounds.review`), until approved


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{uuid.uuid4().hex[:4]}"


def adapter_name(run_id: str, round: int) -> str:
    return validate_adapter_name(f"{run_id}-r{round}")


def run_dir(config: RunConfig, run_id: str) -> Path:
    """Where a run's files live: exported rounds, its evaluation, its worker's lock."""
    return config.data_dir / "runs" / run_id


def split_seeds(seeds: list[SeedTask], held_out: int) -> tuple[list[SeedTask], list[SeedTask]]:
    """Every len/held_out-th seed is kept aside for the before/after comparison, the rest prompt."""
    if held_out <= 0 or held_out >= len(seeds):
        return seeds, []
    step = len(seeds) // held_out
    aside_ids = {seeds[i * step].id for i in range(held_out)}
    return [s for s in seeds if s.id not in aside_ids], [s for s in seeds if s.id in aside_ids]


class RunDriver:
    def __init__(
        self,
        *,
        config: RunConfig,
        store: RunStore,
        generator: ServingGenerator,
        retriever: Retriever | None,
        trainer: AdapterTrainer,
        seeds: list[SeedTask],
        progress: ProgressSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        judge: Generator | None = None,
    ) -> None:
        self.config, self.store, self.generator, self.judge = config, store, generator, judge
        self.retriever, self.trainer, self.progress = retriever, trainer, progress
        if 0 < config.run.seeds_limit < len(seeds):
            # A seeded subset, not the first N: seed files are grouped by task type.
            chosen = {s.id for s in random.Random(config.run.random_seed).sample(seeds, config.run.seeds_limit)}
            seeds = [s for s in seeds if s.id in chosen]
        self.prompt_seeds, self.held_out = split_seeds(seeds, config.run.held_out_seeds)
        self._clock = clock
        self._screen: Screen | None = None

    def create(self, run_id: str | None = None) -> str:
        run_id = run_id or new_run_id(self.config.run.name)
        self.store.create_run(run_id, self.config.run.name, self.config.model_dump(mode="json"))
        return run_id

    def run_dir(self, run_id: str) -> Path:
        return run_dir(self.config, run_id)

    def _circuit(self, run_id: str) -> Circuit:
        async def probe() -> bool:
            return await self.generator.health()

        services = self.config.services
        return Circuit(
            name="generator",
            probe=probe,
            on_pause=lambda reason: self.store.set_status(run_id, "paused", reason=reason),
            on_resume=lambda: self.store.set_status(run_id, "running"),
            pause_after_s=services.pause_after_s,
            max_pause_s=services.max_pause_s,
        )

    def _completed_source(self, source: str) -> str:
        """A run whose round 1 this run shares must exist and have finished that round."""
        if self.store.get_run(source).phase in ("created", "round1:synthesis"):
            done = self.store.sample_counts(source, 1).get("ok", 0)
            raise ConfigError(f"[run] shares round 1 of {source!r}, which has not finished it ({done} samples)")
        return source

    def _shared_round1(self, source: str, summary: RunSummary) -> AdapterRef:
        self._completed_source(source)
        rows = [a for a in self.store.list_adapters(run_id=source) if a.round == 1]
        if not rows:
            raise ConfigError(f"[run.round1_from] run {source!r} has no round-1 adapter")
        adapter = rows[0].ref()
        summary.adapters[1] = adapter
        return adapter

    async def execute(self, run_id: str) -> RunSummary:
        summary = RunSummary(run_id)
        if self.store.get_run(run_id).status == "completed":
            log.info("run %s already completed", run_id)
        try:
            await self._execute(run_id, summary)
        except SelfSpecError as err:
            self.store.set_status(run_id, "failed", reason=str(err))
            raise
        except BaseException as err:
            # Cancellation or a crash: the store keeps everything committed; mark the reason.
            status = "cancelled" if isinstance(err, (asyncio.CancelledError, KeyboardInterrupt)) else "failed"
            self.store.set_status(run_id, status, reason=repr(err)[:500])
            raise
        if summary.awaiting_review is not None:
            rnd = summary.awaiting_review
            self.store.set_status(run_id, AWAITING_REVIEW, phase=f"round{rnd}:review", round=rnd,
                                  reason=f"round {rnd} is synthesised and awaits review; approve it to export and "
                                         "train (POST /v1/runs/{id}/approve, or the dashboard)")
            return summary
        self.store.set_status(run_id, "completed", phase="done")
        return summary

    async def _execute(self, run_id: str, summary: RunSummary) -> None:
        cfg = self.config
        base = cfg.generation.model
        instruction_filter = InstructionFilter(cfg.filters)
        if cfg.filters.check_seeds:
            for seed in self.prompt_seeds:
                instruction_filter.remember(seed.instruction, seed.input)
        circuit = self._circuit(run_id)
        previous: AdapterRef | None = None
        first_round = 1
        if cfg.run.round1_from:
            previous = self._shared_round1(cfg.run.round1_from, summary)
            await hot_load(self.generator, previous)
            first_round = 2
        for rnd in range(first_round, cfg.rounds.count + 1):
            if rnd == 1:
                source = cfg.run.instructions_from
                spec = RoundSpec(run_id, 1, cfg.generation.target_per_round, base, base,
                                 instructions="reuse" if source else "generate",
                                 reuse_source=(self._completed_source(source), 1) if source else None)
            else:
                assert previous is not None
                r2 = cfg.rounds.round2
                # Round rnd-1's instructions live in this run, or in the run whose round 1 we continue.
                earlier = (cfg.run.round1_from, 1) if rnd == 2 and cfg.run.round1_from else (run_id, rnd - 1)
                if r2.instructions == "distinct":
                    for item in self.store.instructions(*earlier):
                        instruction_filter.remember(item.text, item.input)
                spec = RoundSpec(
                    run_id, rnd, r2.target or cfg.generation.target_per_round, response_model=previous.name,
                    instruction_model=previous.name if r2.instruction_model == "adapter" else base,
                    instructions="generate" if r2.instructions == "distinct" else "reuse",
                    reuse_source=earlier,
                )
            self.store.set_status(run_id, "running", phase=f"round{rnd}:synthesis", round=rnd)
            started = self._clock()
            runner = RoundRunner(
                spec, config=cfg, store=self.store, generator=self.generator, retriever=self.retriever,
                seeds=self.prompt_seeds, instruction_filter=instruction_filter, circuit=circuit,
                progress=self.progress, judge=self.judge,
            )
            summary.rounds[rnd] = await runner.run()
            summary.phase_seconds[f"round{rnd}:synthesis"] = self._clock() - started
            self.store.add_event(run_id, "round_done", {"round": rnd, "ok": summary.rounds[rnd].ok,
                                                        "verdicts": summary.rounds[rnd].verdicts,
                                                        "gates": summary.rounds[rnd].gates})

            if cfg.rounds.review and not round_approved(self.store, run_id, rnd):
                log.info("round %d of run %s awaits review (POST /v1/runs/%s/approve)", rnd, run_id, run_id)
                summary.awaiting_review = rnd
                return

            self.store.set_status(run_id, "running", phase=f"round{rnd}:export", round=rnd)
            paths = self._export(run_id, rnd, instruction_model=spec.instruction_model,
                                 response_model=spec.response_model, adapter=previous if rnd > 1 else None)
            summary.datasets[rnd] = paths["sft"]
            if not cfg.training.enabled:
                log.info("training disabled: the run ends with round %d's dataset", rnd)
                return

            self.store.set_status(run_id, "running", phase=f"round{rnd}:training", round=rnd)
            started = self._clock()
            init = Path(previous.path) if (rnd > 1 and cfg.rounds.round2.init_from == "r1" and previous) else None
            dataset = self._training_set(run_id, rnd, paths["sft"], summary)
            adapter = await self.trainer.train_adapter(
                dataset=dataset, name=adapter_name(run_id, rnd), round=rnd, run_id=run_id, init_adapter=init)
            summary.phase_seconds[f"round{rnd}:training"] = self._clock() - started
            self.store.record_adapter(run_id, rnd, adapter.name, adapter.path, adapter.model_dump(mode="json"))
            summary.adapters[rnd] = adapter

            self.store.set_status(run_id, "running", phase=f"round{rnd}:hot-load", round=rnd)
            started = self._clock()
            await hot_load(self.generator, adapter)
            summary.phase_seconds[f"round{rnd}:hot-load"] = self._clock() - started
            previous = adapter


    def _export(self, run_id: str, rnd: int, *, instruction_model: str, response_model: str,
                adapter: AdapterRef | None) -> dict[str, Path]:
        """The round's dataset files and card, as reviewed: rejected samples left out, restored ones in,
        edited responses as edited."""
        paths = export_reviewed_round(self.store, run_id, rnd, self.run_dir(run_id) / f"round{rnd}")
        write_round_card(self.store, paths["sft"].parent, run_id=run_id, round=rnd, config=self.config,
                         instruction_model=instruction_model, response_model=response_model, adapter=adapter,
                         review=review_counts(self.store, run_id, rnd))
        return paths

    def export_again(self, run_id: str) -> list[Path]:
        """Every round of a finished run exported again as reviewed, cards included (a review approved after
        the run ended); its adapters, already trained, stay as they are."""
        base, r2 = self.config.generation.model, self.config.rounds.round2
        source = self.config.run.round1_from  # a run whose round-1 adapter this one continues from
        adapters = {a.round: a.ref() for a in self.store.list_adapters()
                    if a.run_id == run_id or (source and a.run_id == source and a.round == 1)}
        written = []
        for rnd in sample_rounds(self.store, run_id):
            previous = adapters.get(rnd - 1) if rnd > 1 else None
            response_model = previous.name if previous else base
            instruction_model = response_model if r2.instruction_model == "adapter" else base
            written.append(self._export(run_id, rnd, instruction_model=instruction_model,
                                        response_model=response_model, adapter=previous)["sft"])
        return written

    def _training_set(self, run_id: str, rnd: int, sft_path: Path, summary: RunSummary) -> Path:
        """train.jsonl next to the export: the round's records minus any that share a 13-gram with an
        evaluation item or a held-back seed (printed: it must be 0), plus the prompting seeds with
        `training.mix_seeds` (held-back seeds stay held back)."""
        from evaluation.schema import find_task_files
        from trainer.data import load_sft_records

        if self._screen is None:
            # A run without evaluation tasks still keeps its held-back seeds out of training.
            task_paths = [self.config.resolve(Path(t)) for t in self.config.eval.tasks]
            task_files = find_task_files(task_paths) if task_paths else []
            self._screen = build_screen(task_files, self.held_out)
        candidates = load_sft_records(sft_path) if sft_path.stat().st_size else []
        if self.config.training.mix_seeds:
            candidates += [seed_record(seed, run_id=run_id, round=rnd) for seed in self.prompt_seeds]
        records, dropped = screen_records(candidates, self._screen)
        line = (f"round {rnd} training set: {len(dropped)} of {len(candidates)} records share a "
                f"{self._screen.n}-gram with the {self._screen.protected} evaluation items and held-back seeds"
                + (f" (left out: {', '.join(dropped[:5])})" if dropped else ""))
        log.info("%s", line)
        summary.notes.append(line)
        self.store.add_event(run_id, "decontamination", {"round": rnd, "dropped": dropped,
                                                         "protected": self._screen.protected})
        return write_training_set(records, sft_path.with_name("train.jsonl"))


async def hot_load(generator: ServingGenerator, adapter: AdapterRef) -> None:
    """Load into every replica, then check it is listed and answers. Loading twice is fine."""
    try:
        await generator.load_adapter(adapter.name, adapter.path)
    except AdapterConflict:
        log.info("adapter %s was already loaded", adapter.name)
    models = await generator.list_models()
    if adapter.name not in models:
        raise AdapterError(f"adapter {adapter.name} loaded but not listed by the generator ({models})")
    probe = await generator.complete("Hello", model=adapter.name, params=SamplingParams(max_tokens=2))
    log.info("adapter %s is live (probe answered %r)", adapter.name, probe.text)
