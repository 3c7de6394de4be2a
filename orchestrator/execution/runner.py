"""The synthesis engine for one round: a streaming, bounded, resumable instruction -> sample pipeline.

Instruction workers keep generating (3-seed prompts, sampled) while response workers ground and
answer the kept instructions (retrieval + greedy generation), so the generator stays busy. All
decisions that must be exact (filter verdicts, the target count) happen between awaits on the
event loop, i.e. serially, and are committed to the store before they count.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from orchestrator.execution.circuit import Circuit
from orchestrator.pipeline import gates, grounding, instructions, judging
from orchestrator.pipeline.filtering import Candidate, InstructionFilter
from orchestrator.store import RunStore
from selfspec.clients.protocols import Generator, Retriever
from selfspec.errors import RETRYABLE, BackendOverloaded, BackendResponseError, StageError
from selfspec.prompts import template_hash
from selfspec.settings import RunConfig
from selfspec.types import DocRef, Instruction, RetrievedDoc, Sample, SamplingParams, SeedTask

log = logging.getLogger(__name__)

T = TypeVar("T")
Worker = Callable[[], Coroutine[Any, Any, None]]  # a queue worker loop, run as a task
MAX_PROMPTS_PER_TARGET = 40  # give up if instruction generation yields almost nothing usable
NEW_TASKS_PER_PROMPT = 5  # the completion is stopped after this many new list items
# Before a round has evidence of its own, assume one usable instruction per prompt (the demo's Gemma round 1
# gave 1.4: 143 of 104 prompts' candidates passed the filter). The floor keeps a bad streak from stalling it.
PRIOR_YIELD, MIN_YIELD, YIELD_EVIDENCE = 1.0, 0.25, 4
MAX_REJECTED_IN_A_ROW = 10  # the generator refusing this many response prompts in a row is a config problem


class ProgressSink(Protocol):
    def update(self, stage: str, *, done: int, total: int) -> None: ...


class NullProgress:
    def update(self, stage: str, *, done: int, total: int) -> None:
        return None


@dataclass(frozen=True)
class RoundSpec:
    run_id: str
    round: int
    target: int
    response_model: str
    instruction_model: str
    instructions: Literal["generate", "reuse"] = "generate"
    # 'reuse' answers the kept instructions of (run id, round); default: this run's previous round.
    reuse_source: tuple[str, int] | None = None


@dataclass
class RoundResult:
    ok: int
    failed: int
    kept: int
    prompts: int
    wall_s: float
    verdicts: dict[str, int] = field(default_factory=dict)
    gates: dict[str, int] = field(default_factory=dict)  # gated responses (and judge notes) by gate


class RoundRunner:
    def __init__(
        self,
        spec: RoundSpec,
        *,
        config: RunConfig,
        store: RunStore,
        generator: Generator,
        retriever: Retriever | None,
        seeds: list[SeedTask],
        instruction_filter: InstructionFilter,
        circuit: Circuit,
        progress: ProgressSink | None = None,
        judge: Generator | None = None,
    ) -> None:
        self.spec, self.config, self.store = spec, config, store
        self.judge = judge if config.gates.judge_url else None
        self.generator, self.retriever, self.seeds = generator, retriever, seeds
        self.filter, self.circuit = instruction_filter, circuit
        self.progress = progress or NullProgress()
        self._retrieval_slots = asyncio.Semaphore(config.services.retriever_in_flight)
        self._queue: asyncio.Queue[Instruction] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self.ok = self.failed = self.kept = self.prompts = 0
        self._next_prompt = 0
        # Instructions that passed the filter after the target was met ('surplus' in the store): a gated
        # response's replacement is taken from here before any new prompt is spent on it.
        self._spares: list[Instruction] = []
        self._passed = 0  # candidates from this run's prompts that passed the filter (kept or spare)
        self._prompts_in_flight = 0
        self._rejected_in_a_row = 0
        self.finished = False

    # ---- bookkeeping ----

    def need(self) -> int:
        """How many more kept instructions this round needs to reach its target (a failed or gated
        response does not count: its instruction is replaced by a new one)."""
        return self.spec.target - (self.kept - self.failed)

    def _restore(self) -> None:
        """Rebuild in-memory state from the store (a fresh start is the empty case of a resume)."""
        spec = self.spec
        kept = self.store.instructions(spec.run_id, spec.round, verdict="kept")
        for item in kept:
            self.filter.remember(item.text, item.input)
        sampled = self.store.sampled_instruction_ids(spec.run_id, spec.round)
        counts = self.store.sample_counts(spec.run_id, spec.round)
        self.ok, self.kept = counts.get("ok", 0), len(kept)
        self.failed = sum(n for status, n in counts.items() if status != "ok")  # failed or gated
        for item in kept:
            if item.id not in sampled:
                self._queue.put_nowait(item)
        done = self.store.done_prompt_indexes(spec.run_id, spec.round)
        self.prompts = len(done)
        self._next_prompt = max(done) + 1 if done else 0
        self._spares = self.store.instructions(spec.run_id, spec.round, verdict="surplus")
        self._passed = len(kept) + len(self._spares)
        self._promote_spares()
        if self._queue.qsize() or self.ok:
            log.info("round %d resumed: %d samples done, %d instructions pending", spec.round, self.ok,
                     self._queue.qsize())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _report(self) -> None:
        total = self.spec.target
        self.progress.update("instructions", done=min(self.kept - self.failed, total), total=total)
        self.progress.update("samples", done=self.ok, total=total)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Call a service; transient failures (after the client's own retries) go to the circuit."""
        while True:
            try:
                result = await fn()
            except RETRYABLE as err:
                await self.circuit.record_failure(err)
                continue
            self.circuit.record_success()
            return result

    # ---- stage 1: instructions ----

    async def _instruction_worker(self) -> None:
        limit = max(100, self.spec.target * MAX_PROMPTS_PER_TARGET)
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self.finished or self._wants_prompt())
                if self.finished:
                    return
                self._prompts_in_flight += 1  # before any await: the next waiter sees this prompt coming
            try:
                await self._one_prompt(limit)
            finally:
                self._prompts_in_flight -= 1
            await self._notify()

    def _expected_yield(self) -> float:
        """Usable instructions per prompt, as measured in this round so far."""
        if self.prompts < YIELD_EVIDENCE:
            return PRIOR_YIELD
        return max(MIN_YIELD, self._passed / self.prompts)

    def _wants_prompt(self) -> bool:
        """Another prompt is worth sending only for what the prompts already in flight will not cover: when
        a gated answer needs one replacement, one prompt goes out, not one per idle worker."""
        return self.need() > self._prompts_in_flight * self._expected_yield()

    async def _one_prompt(self, limit: int) -> None:
        spec, gen = self.spec, self.config.generation
        if self.prompts >= limit:
            verdicts = self.store.verdict_counts(spec.run_id, spec.round)
            raise StageError("instructions", f"round {spec.round}",
                             f"{self.prompts} prompts gave only {self.kept} usable instructions; verdicts: {verdicts}")
        idx = self._next_prompt
        self._next_prompt += 1
        key = f"{spec.run_id}:{spec.round}:{idx}"
        chosen = instructions.pick_seeds(self.seeds, count=gen.seeds_per_prompt, key=key)
        prompt = instructions.build_prompt(chosen, domain=self.config.run.domain)
        first = len(chosen) + 1
        params = SamplingParams(
            max_tokens=gen.instruction_max_tokens, temperature=gen.temperature, top_p=gen.top_p,
            stop=(f"\n{first + NEW_TASKS_PER_PROMPT}.",),
        )
        completion = await self._call(functools.partial(
            self.generator.complete, prompt, model=spec.instruction_model, params=params))
        self._commit_prompt(idx, completion.text, completion.finish_reason == "length",
                            completion.completion_tokens, [s.id for s in chosen], first)

    def _commit_prompt(self, idx: int, text: str, truncated: bool, tokens: int, seed_ids: list[str],
                       first: int) -> None:
        """Filter and commit one prompt's candidates. No awaits: verdicts are decided serially."""
        spec = self.spec
        candidates, dropped = instructions.parse_candidates(text, first_number=first, truncated=truncated)
        rows: list[Instruction] = []
        base_id = f"{spec.run_id}:r{spec.round}:p{idx}"
        for position, candidate in enumerate(candidates):
            if self.need() - sum(1 for r in rows if r.verdict == "kept") <= 0:
                verdict, reason = self.filter.verdict(candidate)  # not remembered: it may never be used
                if verdict == "kept":
                    verdict, reason = "surplus", "round target already reached"
            else:
                verdict, reason = self.filter.check(candidate)
            rows.append(Instruction(
                id=f"{base_id}:{position}", run_id=spec.run_id, round=spec.round, text=candidate.text,
                input=candidate.input, seed_ids=tuple(seed_ids), prompt_name=instructions.PROMPT_NAME,
                verdict=verdict, reason=reason,
            ))
        for failure, drop in enumerate(dropped):
            rows.append(Instruction(
                id=f"{base_id}:x{failure}", run_id=spec.run_id, round=spec.round, text=drop.text, input=drop.input,
                seed_ids=tuple(seed_ids), prompt_name=instructions.PROMPT_NAME, verdict=drop.verdict,
                reason=drop.reason,
            ))
        if self.store.commit_prompt(spec.run_id, spec.round, idx, rows, tokens) == 0 and rows:
            return  # already committed by an earlier attempt: nothing counts twice
        self.prompts += 1
        kept = [r for r in rows if r.verdict == "kept"]
        spares = [r for r in rows if r.verdict == "surplus"]
        self.kept += len(kept)
        self._passed += len(kept) + len(spares)
        self._spares += spares
        for item in kept:
            self._queue.put_nowait(item)
        self._report()

    def _promote_spares(self) -> None:
        """Fill what the round still needs from the spare instructions, each checked against the filter
        again (instructions kept since may make it a duplicate). No awaits: verdicts stay serial."""
        while self._spares and self.need() > 0 and not self.finished:
            spare = self._spares.pop(0)
            verdict, reason = self.filter.check(Candidate(spare.text, spare.input))
            if verdict != "kept":
                self.store.set_instruction_verdict(spare.id, verdict, reason)
                continue
            reason = "promoted from surplus: replaces a gated or failed answer"
            self.store.set_instruction_verdict(spare.id, "kept", reason)
            self.kept += 1
            self._queue.put_nowait(spare.model_copy(update={"verdict": "kept", "reason": reason}))

    # ---- stage 2: grounded responses ----

    async def _retrieve(self, item: Instruction) -> list[RetrievedDoc]:
        k = self.config.retrieval.k
        if k == 0 or self.retriever is None:
            return []
        query = grounding.retrieval_query(item.text, item.input)
        async with self._retrieval_slots:
            return await self._call(functools.partial(self.retriever.search, query, k))

    async def _response_worker(self) -> None:
        spec, gen = self.spec, self.config.generation
        while True:
            item = await self._queue.get()
            docs = await self._retrieve(item)
            demos = grounding.pick_demos(self.seeds, count=gen.demos_per_response, key=item.id)
            prompt = grounding.build_prompt(
                domain=self.config.run.domain, instruction=item.text, input_text=item.input, demos=demos,
                passages=docs, passage_max_words=gen.passage_max_words,
            )
            params = SamplingParams(max_tokens=gen.response_max_tokens, temperature=0.0, stop=grounding.STOP)
            try:
                completion = await self._call(functools.partial(
                    self.generator.complete, prompt, model=spec.response_model, params=params))
            except BackendResponseError as err:
                if err.status != 400 or isinstance(err, BackendOverloaded):
                    raise
                await self._reject(item, docs, err)  # this prompt, not the run: e.g. too long for the context
                continue
            self._rejected_in_a_row = 0
            response = grounding.clean_response(completion.text)
            # Cut off by the token limit, unless the text had already reached a stop marker.
            truncated = completion.finish_reason == "length" and response == completion.text.strip()
            verdict = gates.check_response(
                response, instruction=item.text, input_text=item.input, truncated=truncated, config=self.config.gates,
                passages=[grounding.clip_words(d.text, gen.passage_max_words) for d in docs],
            )
            if verdict.ok and self.judge is not None:
                verdict = await self._judge(item, response)
            await self._commit_answer(item, docs, response, status=verdict.status, error=verdict.reason)

    async def _commit_answer(self, item: Instruction, docs: list[RetrievedDoc], response: str, *, status: str,
                             error: str) -> None:
        spec = self.spec
        sample = Sample(
            id=f"{item.id}:s", run_id=spec.run_id, round=spec.round, instruction_id=item.id,
            instruction=item.text, input=item.input, response=response,
            retrieved=tuple(DocRef(doc_id=d.id, score=d.score) for d in docs), model=spec.response_model,
            prompt_name=grounding.PROMPT_NAME, prompt_hash=template_hash(grounding.PROMPT_NAME),
        )
        if self.ok >= spec.target:
            # Reuse mode queues spare instructions; one answered after the target is left unsampled.
            self.finished = True
            await self._notify()
            return
        if self.store.commit_sample(sample, status=status, error=error):
            if status == "ok":
                self.ok += 1
            else:
                self.failed += 1  # gated or failed: need() grows, so another instruction replaces this one
                log.debug("sample %s %s: %s", sample.id, status, error)
                self._promote_spares()
        if self.ok >= spec.target:
            self.finished = True
        self._report()
        await self._notify()

    async def _reject(self, item: Instruction, docs: list[RetrievedDoc], err: BackendResponseError) -> None:
        """The generator refused this response prompt (HTTP 400): the item fails, with the generator's
        reason, and is replaced; a run of refusals means every prompt is refused, and fails the stage."""
        self._rejected_in_a_row += 1
        if self._rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
            raise StageError("responses", item.id, f"the generator refused {self._rejected_in_a_row} response "
                             f"prompts in a row; the last said: {err.body[:300]}") from err
        await self._commit_answer(item, docs, "", status="failed", error=f"generator refused the prompt: {err}")

    async def _judge(self, item: Instruction, response: str) -> gates.GateVerdict:
        assert self.judge is not None
        try:
            return await judging.judge_sample(
                self.judge, config=self.config.gates, domain=self.config.run.domain, instruction=item.text,
                input_text=item.input, response=response)
        except RETRYABLE as err:
            raise StageError("judge", item.id, f"judge endpoint unavailable: {err}") from err

    # ---- the round ----

    def _seed_reused(self) -> None:
        """'reuse' mode: this round answers an earlier round's kept instructions again (idempotent)."""
        spec = self.spec
        source_run, source_round = spec.reuse_source or (spec.run_id, spec.round - 1)
        # All of them, not the first `target`: those whose answer is gated are replaced by the next ones.
        previous = self.store.instructions(source_run, source_round, verdict="kept")
        copies = [
            Instruction(id=f"{spec.run_id}:r{spec.round}:reuse:{i}", run_id=spec.run_id, round=spec.round,
                        text=p.text, input=p.input, seed_ids=p.seed_ids, prompt_name="reuse", verdict="kept",
                        reason=f"reused from {p.id}")
            for i, p in enumerate(previous)
        ]
        self.store.add_instructions(spec.run_id, spec.round, copies)

    async def run(self) -> RoundResult:
        started = time.monotonic()
        if self.spec.instructions == "reuse":
            self._seed_reused()
        self._restore()
        self._report()
        gen = self.config.generation
        if self.ok >= self.spec.target:
            self.finished = True
        else:
            workers: list[Worker] = [self._response_worker] * gen.response_workers
            if self.spec.instructions == "generate":
                workers += [self._instruction_worker] * gen.instruction_workers
            elif self._queue.qsize() == 0:
                self.finished = True  # reuse with nothing left to answer
            if not self.finished:
                await self._run_until_finished(workers)
        verdicts = self.store.verdict_counts(self.spec.run_id, self.spec.round)
        gated = self.store.gate_counts(self.spec.run_id, self.spec.round)
        return RoundResult(self.ok, self.failed, self.kept, self.prompts, time.monotonic() - started, verdicts, gated)

    async def _run_until_finished(self, workers: list[Worker]) -> None:
        tasks = [asyncio.create_task(w(), name=f"{w.__name__}-{i}") for i, w in enumerate(workers)]
        try:
            while not self.finished:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=0.5)
                for task in done:
                    if (error := task.exception()) is not None:
                        raise error
                if self.spec.instructions == "reuse" and self._queue.qsize() == 0 and self._all_idle(tasks):
                    break
        finally:
            self.finished = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _all_idle(self, tasks: list[asyncio.Task[Any]]) -> bool:
        # In reuse mode the queue is the whole workload; once drained and every answer is
        # committed, the round is over even if some answers failed.
        kept_total = self.kept
        return self.ok + self.failed >= kept_total
