"""The synthesis engine against the scripted fake server (in process, fast)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from orchestrator.circuit import Circuit, ServiceDown
from orchestrator.pipeline.filtering import InstructionFilter
from orchestrator.runner import RoundRunner, RoundSpec
from orchestrator.store import RunStore
from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.errors import BackendUnavailable
from selfspec.seeds import load_seeds
from selfspec.settings import RunConfig, load_config
from selfspec.types import Document, RetrievedDoc
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


def _runner(state: FakeState, store: RunStore, config: RunConfig, *, target: int, run_id: str = "run1",
            retriever: ListRetriever | None = None, statuses: list[str] | None = None) -> tuple[RoundRunner, OpenAICompatGenerator]:
    generator = OpenAICompatGenerator(["http://fake"], transport=httpx.ASGITransport(app=create_fake_app(state)),
                                      retries=config.services.retries, backoff_s=0.001, timeout_s=2.0)
    seen = statuses if statuses is not None else []
    circuit = Circuit(name="generator", probe=generator.health, on_pause=lambda r: seen.append(f"paused: {r}"),
                      on_resume=lambda: seen.append("running"), pause_after_s=config.services.pause_after_s,
                      max_pause_s=config.services.max_pause_s, probe_interval_s=0.02)
    spec = RoundSpec(run_id, 1, target, state.served_name, state.served_name)
    runner = RoundRunner(spec, config=config, store=store, generator=generator, retriever=retriever, seeds=SEEDS,
                         instruction_filter=InstructionFilter(config.filters), circuit=circuit)
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
