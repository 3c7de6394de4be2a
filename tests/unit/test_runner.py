"""The synthesis engine against the scripted fake server (in process, fast)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.execution.circuit import Circuit, ServiceDown
from orchestrator.execution.runner import RoundRunner, RoundSpec
from orchestrator.pipeline.filtering import InstructionFilter
from orchestrator.pipeline.records import export_round
from orchestrator.store import RunStore
from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.errors import BackendResponseError, BackendUnavailable, StageError
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig, load_config
from selfspec.types import Completion, Document, RetrievedDoc, SamplingParams
from tests.fakes.openai_server import FakeState, create_fake_app

REPO = Path(__file__).resolve().parents[2]
SEEDS = load_seeds(REPO / "seeds/biomedical.jsonl")


class ListRetriever:
    """A tiny in-memory retriever: every query gets the first k documents."""

    def __init__(self) -> None:
        self.docs = [RetrievedDoc(id=f"d{i}", score=10.0 - i, title=f"T{i}", text=f"text {i}") for i in range(10)]
        self.calls = 0

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        self.calls += 1
        return self.docs[:k]

    async def add_documents(self, documents: list[Document]) -> int:
        return 0

    async def count(self) -> int:
        return len(self.docs)


def _config(**overrides: object) -> RunConfig:
    base = {"generation.instruction_workers": 3, "generation.response_workers": 4, "services.backoff_s": 0.001,
            "services.pause_after_s": 0.05, "services.max_pause_s": 5.0}
    base.update(overrides)
    return load_config(None, base)


class BadAnswers:
    """Wraps the fake generator: every `every`-th answer (not instruction list) becomes one bad kind of
    response in turn, e.g. a loop to the token limit, so the gates have something to catch."""

    BAD = (
        ("", "stop"),  # empty
        ("Risk factors include: " + "sleep-disrupting medications; mental health; " * 12, "length"),  # repetitive
        ("Statins inhibit HMG-CoA reductase, the rate-limiting enzyme of cholesterol synthesis, which", "length"),
    )

    def __init__(self, inner: OpenAICompatGenerator, every: int = 3) -> None:
        self.inner, self.every, self.answers, self.bad = inner, every, 0, 0

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        completion = await self.inner.complete(prompt, model=model, params=params)
        if prompt.endswith("Instruction:"):
            return completion
        self.answers += 1
        if self.answers % self.every:
            return completion
        text, finish = self.BAD[self.bad % len(self.BAD)]
        self.bad += 1
        return completion.model_copy(update={"text": text, "finish_reason": finish})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _runner(state: FakeState, store: RunStore, config: RunConfig, *, target: int, run_id: str = "run1",
            retriever: ListRetriever | None = None, statuses: list[str] | None = None,
            bad_every: int = 0, judge: OpenAICompatGenerator | None = None) -> tuple[RoundRunner, Any]:
    generator: Any = OpenAICompatGenerator(["http://fake"], transport=httpx.ASGITransport(app=create_fake_app(state)),
                                           retries=config.services.retries, backoff_s=0.001, timeout_s=2.0)
    if bad_every:
        generator = BadAnswers(generator, bad_every)
    seen = statuses if statuses is not None else []
    circuit = Circuit(name="generator", probe=generator.health, on_pause=lambda r: seen.append(f"paused: {r}"),
                      on_resume=lambda: seen.append("running"), pause_after_s=config.services.pause_after_s,
                      max_pause_s=config.services.max_pause_s, probe_interval_s=0.02)
    spec = RoundSpec(run_id, 1, target, state.served_name, state.served_name)
    runner = RoundRunner(spec, config=config, store=store, generator=generator, retriever=retriever, seeds=SEEDS,
                         instruction_filter=InstructionFilter(config.filters), circuit=circuit, judge=judge)
    return runner, generator


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(f"sqlite:///{tmp_path}/db.sqlite")
    store.create_run("run1", "test", {})
    return store


async def test_round_stops_exactly_at_target_with_provenance(store: RunStore) -> None:
    retriever = ListRetriever()
    runner, gen = _runner(FakeState(), store, _config(), target=37, retriever=retriever)
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 37 and store.sample_counts("run1", 1) == {"ok": 37}
    samples = list(store.iter_samples("run1", 1))
    assert len({s.instruction_id for s in samples}) == 37
    assert all([d.doc_id for d in s.retrieved] == ["d0", "d1", "d2", "d3", "d4"] for s in samples)
    assert all(s.model == "fake-base" and s.prompt_hash for s in samples)
    kept = store.instructions("run1", 1)
    assert len(kept) == 37  # kept never overshoots: extra candidates are recorded as 'surplus'


async def test_k_zero_skips_retrieval(store: RunStore) -> None:
    retriever = ListRetriever()
    runner, gen = _runner(FakeState(), store, _config(**{"retrieval.k": 0}), target=5, retriever=retriever)
    await runner.run()
    await gen.aclose()
    assert retriever.calls == 0
    assert all(s.retrieved == () for s in store.iter_samples("run1", 1))


async def test_injected_faults_are_retried_and_bounded(store: RunStore) -> None:
    state = FakeState(error_rate=0.2, stall_rate=0.05, stall_s=5.0)
    config = _config(**{"services.retries": 6})
    runner, gen = _runner(state, store, config, target=40)
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 40
    assert state.errors_sent > 0 and gen.retry_count >= state.errors_sent
    # Each call is retried at most `retries` times; the fake saw no more calls than that allows.
    assert state.calls <= (result.prompts + result.ok + gen.retry_count) + 5


async def test_resume_keeps_committed_items_and_adds_no_duplicates(store: RunStore) -> None:
    runner, gen = _runner(FakeState(latency_s=0.01), store, _config(), target=30)
    task = asyncio.create_task(runner.run())
    while store.sample_counts("run1", 1).get("ok", 0) < 10:  # noqa: ASYNC110 (polling the store is the point)
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gen.aclose()
    before = {s.id: s.response for s in store.iter_samples("run1", 1)}
    assert 10 <= len(before) < 30
    runner2, gen2 = _runner(FakeState(), store, _config(), target=30)
    result = await runner2.run()
    await gen2.aclose()
    after = {s.id: s.response for s in store.iter_samples("run1", 1)}
    assert result.ok == 30 and len(after) == 30
    assert all(after[k] == v for k, v in before.items())  # committed samples were kept as they were


async def test_generator_down_pauses_then_resumes(store: RunStore) -> None:
    state = FakeState(down=True)
    statuses: list[str] = []
    runner, gen = _runner(state, store, _config(**{"services.retries": 1}), target=8, statuses=statuses)
    task = asyncio.create_task(runner.run())
    for _ in range(500):
        if statuses:
            break
        await asyncio.sleep(0.01)
    assert statuses and statuses[0].startswith("paused: generator unavailable")
    assert store.sample_counts("run1", 1) == {}
    state.down = False
    result = await asyncio.wait_for(task, timeout=30)
    await gen.aclose()
    assert result.ok == 8 and statuses[-1] == "running"


async def test_generator_down_too_long_fails_clearly(store: RunStore) -> None:
    state = FakeState(down=True)
    runner, gen = _runner(state, store, _config(**{"services.retries": 0, "services.max_pause_s": 0.2}), target=3)
    with pytest.raises(ServiceDown, match="still down"):
        await runner.run()
    await gen.aclose()


async def test_a_call_that_gets_through_resumes_a_paused_circuit_at_once() -> None:
    """The round may reach its target between two probes of the pausing worker (which is then
    cancelled): the first successful call must already record `running`, and only once."""
    healthy = False
    statuses: list[str] = []

    async def probe() -> bool:
        return healthy

    paused = asyncio.Event()

    def on_pause(reason: str) -> None:
        statuses.append("paused")
        paused.set()

    circuit = Circuit(name="generator", probe=probe, on_pause=on_pause, on_resume=lambda: statuses.append("running"),
                      pause_after_s=0.0, max_pause_s=5.0, probe_interval_s=0.05)
    pausing = asyncio.create_task(circuit.record_failure(BackendUnavailable("down", backend="g")))
    await asyncio.wait_for(paused.wait(), timeout=5)
    healthy = True
    circuit.record_success()  # another worker's call got through
    assert statuses == ["paused", "running"] and not circuit.paused
    await asyncio.wait_for(pausing, timeout=5)
    assert statuses == ["paused", "running"]  # the prober does not say it twice


# ---- response gates: a gated instruction is replaced, so the round still ends at its target ----

def _assert_exact(store: RunStore, target: int, gated: dict[str, int]) -> None:
    rows = list(store.samples_page("run1", round=1, status=None, limit=1000))
    assert len({r["instruction_id"] for r in rows}) == len(rows)  # one sample per instruction, never two
    assert store.sample_counts("run1", 1) == {"ok": target, **gated}
    assert store.gate_counts("run1", 1) == gated
    assert all(r["error"] for r in rows if r["status"] != "ok")  # every gated sample keeps its reason


async def test_gated_responses_are_replaced_and_the_round_ends_at_its_target(store: RunStore, tmp_path: Path) -> None:
    runner, gen = _runner(FakeState(), store, _config(), target=30, bad_every=3)
    result = await runner.run()
    await gen.aclose()
    bad = gen.bad
    assert bad >= 10 and result.ok == 30
    gated = {"empty": (bad + 2) // 3, "repetitive": (bad + 1) // 3, "truncated": bad // 3}
    _assert_exact(store, 30, gated)
    assert result.gates == gated and result.failed == bad
    assert result.kept == 30 + bad  # each gated instruction was replaced by a fresh one
    # Only ok samples reach the exported datasets.
    paths = export_round(store.iter_samples("run1", 1), tmp_path / "round1")
    records = [json.loads(line) for line in paths["sft"].read_text().splitlines()]
    ok_ids = {r["id"] for r in store.samples_page("run1", round=1, status="ok", limit=1000)}
    assert len(records) == 30 and {r["source_sample_id"] for r in records} == ok_ids
    assert all(r["output"].startswith("Answer from") for r in records)


async def test_resume_after_gated_responses_counts_nothing_twice(store: RunStore) -> None:
    runner, gen = _runner(FakeState(latency_s=0.01), store, _config(), target=30, bad_every=3)
    task = asyncio.create_task(runner.run())
    while store.sample_counts("run1", 1).get("ok", 0) < 10:  # noqa: ASYNC110 (polling the store is the point)
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await gen.aclose()
    gated_before = store.gate_counts("run1", 1)
    assert sum(gated_before.values()) >= 3
    runner2, gen2 = _runner(FakeState(), store, _config(), target=30)  # the resumed run answers well
    result = await runner2.run()
    await gen2.aclose()
    assert result.ok == 30
    _assert_exact(store, 30, gated_before)  # earlier gated samples stay counted once, none added
    assert result.failed == sum(gated_before.values())


async def test_gates_switched_off_keep_every_response(store: RunStore) -> None:
    config = _config(**{"gates.truncated": False, "gates.repetitive": False})
    runner, gen = _runner(FakeState(), store, config, target=12, bad_every=3)
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 12 and set(result.gates) == {"empty"}  # empty responses are always gated


# ---- the judge stage against the fake server ----

def _judge(state: FakeState) -> OpenAICompatGenerator:
    return OpenAICompatGenerator(["http://judge"], transport=httpx.ASGITransport(app=create_fake_app(state)),
                                 retries=0, backoff_s=0.001, timeout_s=2.0)


async def test_judge_gates_low_scores_and_counts_unparsed_replies(store: RunStore) -> None:
    judge_state = FakeState(served_name="judge-model", judge_replies=("9", "Score: 2/10", "8 out of 10", "Looks fine."))
    config = _config(**{"gates.judge_url": "http://judge", "gates.judge_model": "judge-model",
                        "gates.judge_threshold": 5})
    judge = _judge(judge_state)
    runner, gen = _runner(FakeState(), store, config, target=12, judge=judge)
    result = await runner.run()
    await gen.aclose()
    await judge.aclose()
    calls = judge_state.judge_calls
    assert result.ok == 12 and calls == 12 + result.gates["judge_low"]
    # Replies cycle 9 / 2 / 8 / unparsed: a quarter of the calls is low, a quarter kept unscored.
    assert result.gates["judge_low"] == (calls + 2) // 4
    assert result.gates["judge_unparsed_kept"] == calls // 4
    assert store.sample_counts("run1", 1) == {"ok": 12, "judge_low": result.gates["judge_low"]}


async def test_judge_unparsed_replies_can_be_dropped(store: RunStore) -> None:
    judge_state = FakeState(served_name="judge-model", judge_replies=("7", "no idea"))
    config = _config(**{"gates.judge_url": "http://judge", "gates.judge_model": "judge-model",
                        "gates.judge_unparsed": "drop"})
    judge = _judge(judge_state)
    runner, gen = _runner(FakeState(), store, config, target=6, judge=judge)
    result = await runner.run()
    await gen.aclose()
    await judge.aclose()
    assert result.ok == 6 and result.gates == {"judge_unparsed": judge_state.judge_calls - 6}
    assert result.gates["judge_unparsed"] >= 5


async def test_no_judge_url_means_no_judge_calls(store: RunStore) -> None:
    judge_state = FakeState(served_name="judge-model", judge_replies=("1",))
    judge = _judge(judge_state)
    runner, gen = _runner(FakeState(), store, _config(), target=5, judge=judge)
    result = await runner.run()
    await gen.aclose()
    await judge.aclose()
    assert result.ok == 5 and judge_state.judge_calls == 0


async def test_reuse_round_replaces_gated_answers_with_the_next_reused_instructions(store: RunStore) -> None:
    runner, gen = _runner(FakeState(), store, _config(), target=12, bad_every=3)
    first = await runner.run()
    await gen.aclose()
    assert first.kept > 12  # round 1 replaced its gated instructions: spares for round 2
    runner2, gen2 = _runner(FakeState(), store, _config(), target=12, bad_every=4)
    runner2.spec = RoundSpec("run1", 2, 12, "fake-base", "fake-base", instructions="reuse")
    second = await runner2.run()
    await gen2.aclose()
    gated = sum(second.gates.values())
    assert second.ok == 12 and 1 <= gated <= gen2.bad  # an answer after the target is not committed
    assert store.sample_counts("run1", 2) == {"ok": 12, **second.gates}


class RefusesAnswers:
    """Wraps the fake generator: the response prompts listed in `refuse` (1-based) get vLLM's 400."""

    def __init__(self, inner: OpenAICompatGenerator, refuse: set[int] | None = None, *, all_: bool = False) -> None:
        self.inner, self.refuse, self.all, self.answers = inner, refuse or set(), all_, 0

    async def complete(self, prompt: str, *, model: str, params: SamplingParams) -> Completion:
        if not prompt.endswith("Instruction:"):
            self.answers += 1
            if self.all or self.answers in self.refuse:
                raise BackendResponseError(400, "This model's maximum context length is 2048 tokens.")
        return await self.inner.complete(prompt, model=model, params=params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_gated_answers_are_replaced_from_the_surplus_before_new_prompts(store: RunStore) -> None:
    # Three candidates a prompt and a bad answer in three: the surplus of earlier prompts covers the
    # replacements, so fewer prompts are sent than a fresh prompt per gated answer would need.
    state = FakeState(tasks_per_prompt=3)
    runner, gen = _runner(state, store, _config(**{"generation.instruction_workers": 8}), target=24, bad_every=3)
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 24 and result.failed == gen.bad >= 8
    promoted = [i for i in store.instructions("run1", 1) if i.reason.startswith("promoted from surplus")]
    assert promoted  # replacements came from spares
    assert result.kept == 24 + gen.bad  # each promotion counts as one kept instruction, no more
    assert len(store.sampled_instruction_ids("run1", 1)) == 24 + gen.bad
    assert result.prompts * 3 <= result.kept + len(store.instructions("run1", 1, verdict="surplus")) + 3 * 8


async def test_a_small_need_sends_few_prompts_however_many_workers_wait(store: RunStore) -> None:
    state = FakeState(tasks_per_prompt=3, latency_s=0.01)
    runner, gen = _runner(state, store, _config(**{"generation.instruction_workers": 16}), target=2)
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 2
    assert result.prompts <= 2  # was 16: every idle worker sent one for the same two instructions


async def test_resume_promotes_spares_left_by_the_killed_run(store: RunStore) -> None:
    runner, gen = _runner(FakeState(tasks_per_prompt=5), store, _config(), target=4)
    await runner.run()
    await gen.aclose()
    spares = store.instructions("run1", 1, verdict="surplus")
    assert spares
    # A later target (as after a resume with a grown need) is met from the stored spares first.
    runner2, gen2 = _runner(FakeState(tasks_per_prompt=5), store, _config(), target=4 + len(spares))
    result = await runner2.run()
    await gen2.aclose()
    assert result.ok == 4 + len(spares)
    assert result.prompts == runner.prompts  # no new prompt: the spares sufficed
    assert not store.instructions("run1", 1, verdict="surplus")


async def test_a_refused_response_prompt_fails_its_item_not_the_round(store: RunStore) -> None:
    runner, gen = _runner(FakeState(), store, _config(), target=10)
    runner.generator = RefusesAnswers(gen, {2, 5})
    result = await runner.run()
    await gen.aclose()
    assert result.ok == 10 and result.failed == 2
    failed = store.samples_page("run1", round=1, status="failed", limit=10)
    assert len(failed) == 2 and all("maximum context length" in r["error"] for r in failed)


async def test_every_response_prompt_refused_fails_the_stage_clearly(store: RunStore) -> None:
    runner, gen = _runner(FakeState(), store, _config(), target=10)
    runner.generator = RefusesAnswers(gen, all_=True)
    with pytest.raises(StageError, match=r"refused 1\d response prompts in a row"):
        await runner.run()
    await gen.aclose()
