"""Synthesis engine benchmarks; every figure is a ratio against a baseline measured in the same run.

  P1 efficiency: engine samples/s vs the same requests from a bare async client at the same concurrency,
     and vs a serial one-request-at-a-time loop, against the embedded generator (real tiny model).
     `p1-pipeline`: a whole round (instruction generation -> filters -> grounded responses), the engine
     at its default concurrency vs the same code with one request at a time (a serial loop).
  P2 overhead: engine samples/s against a zero-latency fake server at 1k, 10k, 50k samples.
  P4 dedup: 20k instructions through the near-dup filter vs naive all-pairs on 2k.

    .venv/bin/python bench/bench_engine.py p2 --sizes 1000,10000,50000 [--vocab 5000 | --vocab 0]
    .venv/bin/python bench/bench_engine.py p1 --samples 24
    .venv/bin/python bench/bench_engine.py p1-pipeline --samples 16
    .venv/bin/python bench/bench_engine.py p4
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from orchestrator.execution.circuit import Circuit  # noqa: E402
from orchestrator.execution.runner import RoundRunner, RoundSpec  # noqa: E402
from orchestrator.pipeline import grounding  # noqa: E402
from orchestrator.pipeline.filtering import Candidate, InstructionFilter  # noqa: E402
from orchestrator.store import RunStore  # noqa: E402
from selfspec.clients.openai_compat import OpenAICompatGenerator  # noqa: E402
from selfspec.processes import ManagedServer, child_env, free_port  # noqa: E402
from selfspec.seeds import load_seeds  # noqa: E402
from selfspec.settings import FiltersSection, RunConfig, load_config  # noqa: E402
from selfspec.types import SeedTask  # noqa: E402
from services.generator.launcher import embedded_generator_command  # noqa: E402

SEEDS = load_seeds(REPO / "seeds/biomedical.jsonl")


async def run_engine(url: str, model: str, config: RunConfig, target: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(f"sqlite:///{tmp}/bench.db")
        store.create_run("bench", "bench", {})
        generator = OpenAICompatGenerator([url], in_flight=config.services.generator_in_flight, retries=2)
        circuit = Circuit(name="generator", probe=generator.health, on_pause=lambda r: None, on_resume=lambda: None,
                          pause_after_s=30, max_pause_s=60)
        runner = RoundRunner(RoundSpec("bench", 1, target, model, model), config=config, store=store,
                             generator=generator, retriever=None, seeds=SEEDS,
                             instruction_filter=InstructionFilter(config.filters), circuit=circuit)
        started = time.perf_counter()
        result = await runner.run()
        elapsed = time.perf_counter() - started
        await generator.aclose()
        store.close()
        return elapsed, result.prompts


def _fake_server(tmp: Path, vocab: int = 0) -> ManagedServer:
    port = free_port()
    return ManagedServer([sys.executable, "-m", "tests.fakes.serve", "--port", str(port), "--vocab", str(vocab)],
                         url=f"http://127.0.0.1:{port}", log_path=tmp / "fake.log",
                         env={**child_env(), "PYTHONPATH": str(REPO)}, startup_timeout_s=60)


def p2(sizes: list[int], vocab: int) -> None:
    config = load_config(None, {"retrieval.k": 0, "generation.instruction_workers": 4,
                                "generation.response_workers": 16, "services.generator_in_flight": 32})
    with tempfile.TemporaryDirectory() as tmp, _fake_server(Path(tmp), vocab) as fake:
        rates = []
        for size in sizes:
            elapsed, _ = asyncio.run(run_engine(fake.url, "fake-base", config, size))
            rates.append(size / elapsed)
            print(f"P2 {size:>6} samples (fake vocabulary {vocab or 100}): {elapsed:7.1f}s  "
                  f"{size / elapsed:7.1f} samples/s")
    print(f"P2 flatness: rate at {sizes[-1]} / rate at {sizes[0]} = {rates[-1] / rates[0]:.2f}")


@contextmanager
def embedded_generator() -> Iterator[tuple[str, str]]:
    """The embedded generator on the real tiny model, batching up to 16 rows; yields (URL, model id)."""
    from selfspec.models import pull_tiny_model
    model_dir = pull_tiny_model(REPO / ".cache/selfspec")
    port = free_port()
    command = embedded_generator_command(model=str(model_dir), port=port, adapters_dir=REPO / ".selfspec/adapters",
                                         cache_dir=REPO / ".cache/selfspec", max_batch=16)
    url = f"http://127.0.0.1:{port}"
    with ManagedServer(command, url=url, log_path=REPO / ".selfspec/logs/bench-engine.log", env=child_env()):
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        # Warm-up (first forward passes allocate and tune kernels): whichever contender ran first paid it.
        for batch in (1, 4):
            asyncio.run(bare_client(url, model, ["Say hello."] * batch, batch))
        yield url, model


async def bare_client(url: str, model: str, prompts: list[str], concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)
    params = {"max_tokens": 96, "temperature": 0, "stop": list(grounding.STOP)}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(prompt: str) -> None:
            async with slots:
                (await client.post("/v1/completions", json={"model": model, "prompt": prompt, **params})).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*[one(p) for p in prompts])
        return time.perf_counter() - started


def p1_config(concurrency: int) -> RunConfig:
    return load_config(None, {"retrieval.k": 0, "generation.response_workers": concurrency,
                              "services.generator_in_flight": concurrency, "generation.demos_per_response": 2,
                              "generation.response_max_tokens": 96})


def p1_instruction_id(seed_id: str) -> str:
    return f"bench:r1:{seed_id}"


def p1(samples: int) -> None:
    """Response stage only (instructions given), so engine and bare client send the same requests."""
    rng = random.Random(0)
    items = rng.sample(SEEDS, samples)
    # Exactly the prompts the engine builds: its demos are drawn with the instruction's id as the key.
    config = p1_config(16)
    prompts = [grounding.build_prompt(domain=config.run.domain, instruction=s.instruction, input_text=s.input,
                                      demos=grounding.pick_demos(SEEDS, count=config.generation.demos_per_response,
                                                                 key=p1_instruction_id(s.id)),
                                      passages=[], passage_max_words=config.generation.passage_max_words)
               for s in items]
    with embedded_generator() as (url, model):
        bare = asyncio.run(bare_client(url, model, prompts, 16))
        serial = asyncio.run(bare_client(url, model, prompts, 1))
        engine = asyncio.run(engine_responses(url, model, items, 16))
    print(f"P1 {samples} grounded responses: engine {engine:.1f}s, bare async client {bare:.1f}s, serial {serial:.1f}s")
    print(f"P1 engine/bare throughput ratio = {bare / engine:.2f} (goal >= 0.9); engine vs serial = {serial / engine:.2f}x")


async def engine_responses(url: str, model: str, items: list[SeedTask], concurrency: int) -> float:
    """The engine's response stage on given instructions (reuse mode), k=0 like the bare client."""
    from selfspec.types import Instruction

    config = p1_config(concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(f"sqlite:///{tmp}/bench.db")
        store.create_run("bench", "bench", {})
        store.add_instructions("bench", 1, [
            Instruction(id=p1_instruction_id(s.id), run_id="bench", round=1, text=s.instruction, input=s.input)
            for s in items])
        generator = OpenAICompatGenerator([url], in_flight=concurrency)
        circuit = Circuit(name="g", probe=generator.health, on_pause=lambda r: None, on_resume=lambda: None,
                          pause_after_s=30, max_pause_s=60)
        spec = RoundSpec("bench", 2, len(items), model, model, instructions="reuse")
        runner = RoundRunner(spec, config=config, store=store, generator=generator, retriever=None, seeds=SEEDS,
                             instruction_filter=InstructionFilter(config.filters), circuit=circuit)
        started = time.perf_counter()
        await runner.run()
        elapsed = time.perf_counter() - started
        await generator.aclose()
        store.close()
        return elapsed


def p1_pipeline(samples: int) -> None:
    """A whole round, engine vs serial, same code and config but the concurrency."""
    with embedded_generator() as (url, model):
        results = {}
        for name, workers, in_flight in (("serial", (1, 1), 1), ("engine", (4, 16), 16)):
            config = load_config(None, {"retrieval.k": 0, "generation.model": model,
                                        "generation.instruction_workers": workers[0],
                                        "generation.response_workers": workers[1],
                                        "services.generator_in_flight": in_flight})
            results[name] = asyncio.run(run_engine(url, model, config, samples))
    for name, (elapsed, prompts) in results.items():
        print(f"P1 pipeline {name}: {samples} samples from {prompts} instruction prompts in {elapsed:.1f}s "
              f"({samples / elapsed:.2f} samples/s)")
    print(f"P1 pipeline engine vs serial = {results['serial'][0] / results['engine'][0]:.2f}x (goal >= 3x on CPU)")


def p4() -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    common = ["the", "of", "a", "in", "and", "to", "for", "with", "given", "following"]
    texts = [" ".join(rng.choice(vocab if rng.random() < 0.6 else common) for _ in range(rng.randint(5, 25)))
             for _ in range(20000)]
    texts += [t + " again" for t in rng.sample(texts, 2000)]  # real near-duplicates
    rng.shuffle(texts)
    fast = InstructionFilter(FiltersSection())
    started = time.perf_counter()
    for text in texts[:20000]:
        fast.check(Candidate(text))
    fast_s = time.perf_counter() - started
    small_fast = InstructionFilter(FiltersSection())
    started = time.perf_counter()
    for text in texts[:2000]:
        small_fast.check(Candidate(text))
    small_fast_s = time.perf_counter() - started
    naive = InstructionFilter(FiltersSection(), exhaustive=True)
    started = time.perf_counter()
    for text in texts[:2000]:
        naive.check(Candidate(text))
    naive_s = time.perf_counter() - started
    print(f"P4 indexed filter: 20k instructions in {fast_s:.1f}s (goal <= 60s); 2k in {small_fast_s:.2f}s")
    print(f"P4 naive all-pairs on 2k: {naive_s:.1f}s; indexed vs naive on 2k: {naive_s / small_fast_s:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["p1", "p1-pipeline", "p2", "p4"])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=5000,
                        help="P2: the fake's made-up vocabulary (0: 100 words in one template, the filter's worst case)")
    args = parser.parse_args()
    if args.which == "p2":
        p2([int(s) for s in args.sizes.split(",")], args.vocab)
    elif args.which == "p1":
        p1(args.samples)
    elif args.which == "p1-pipeline":
        p1_pipeline(args.samples)
    else:
        p4()


if __name__ == "__main__":
    main()
