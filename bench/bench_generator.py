"""Generated tokens/s at 1, 4, 16, 64 concurrent requests: embedded server vs serial transformers `generate`
(and vLLM when --vllm-url is given), same fixed prompts, greedy, fixed max_tokens. Prints ratios.

    .venv/bin/python bench/bench_generator.py [--max-tokens 64] [--vllm-url http://127.0.0.1:8010]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from selfspec.models import pull_tiny_model  # noqa: E402
from selfspec.processes import ManagedServer, child_env, free_port  # noqa: E402
from services.generator.launcher import embedded_generator_command  # noqa: E402

PROMPTS = [f"Question {i}: explain in two sentences what the {topic} does in the human body.\nAnswer:"
           for i, topic in enumerate(["liver", "kidney", "heart", "lung", "pancreas", "spleen", "thyroid", "skin"] * 8)]


def serial_transformers(model_dir: Path, n: int, max_tokens: int) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()  # type: ignore[no-untyped-call]  # unannotated in transformers
    tokens = 0
    started = time.perf_counter()
    for prompt in PROMPTS[:n]:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False,
                                 min_new_tokens=max_tokens, pad_token_id=tokenizer.eos_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens, time.perf_counter() - started


async def concurrent(url: str, model: str, n: int, concurrency: int, max_tokens: int) -> tuple[int, float]:
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(prompt: str) -> int:
            async with slots:
                response = await client.post("/v1/completions", json={
                    "model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                    "min_tokens": max_tokens, "ignore_eos": True})
                response.raise_for_status()
                return int(response.json()["usage"]["completion_tokens"])

        started = time.perf_counter()
        counts = await asyncio.gather(*[one(p) for p in PROMPTS[:n]])
        return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--vllm-url", default="")
    parser.add_argument("--vllm-model", default="smollm2-135m")
    args = parser.parse_args()
    model_dir = pull_tiny_model(REPO / ".cache/selfspec")
    levels = [int(x) for x in args.levels.split(",")]

    serial_n = 8
    tokens, seconds = serial_transformers(model_dir, serial_n, args.max_tokens)
    serial_rate = tokens / seconds
    print(f"serial transformers generate: {serial_n} requests, {tokens} tokens, {serial_rate:.1f} tok/s (baseline)")

    port = free_port()
    command = embedded_generator_command(model=str(model_dir), port=port, adapters_dir=REPO / ".selfspec/adapters",
                                         cache_dir=REPO / ".cache/selfspec", max_batch=64)
    command += ["--served-name", "smollm2-135m"]
    rows = []
    with ManagedServer(command, url=f"http://127.0.0.1:{port}", log_path=REPO / ".selfspec/logs/bench-gen.log",
                       env=child_env()):
        for level in levels:
            n = max(level, 8)
            tokens, seconds = asyncio.run(concurrent(f"http://127.0.0.1:{port}", "smollm2-135m", n, level,
                                                     args.max_tokens))
            rows.append(("embedded", level, tokens / seconds))
    if args.vllm_url:
        for level in levels:
            n = max(level, 8)
            tokens, seconds = asyncio.run(concurrent(args.vllm_url, args.vllm_model, n, level, args.max_tokens))
            rows.append(("vllm", level, tokens / seconds))
    print(f"{'server':<10}{'concurrent':>11}{'tok/s':>9}{'vs serial':>11}")
    for server, level, rate in rows:
        print(f"{server:<10}{level:>11}{rate:>9.1f}{rate / serial_rate:>10.2f}x")
    if args.vllm_url:
        for level in levels:
            emb = next(r for s, lv, r in rows if s == "embedded" and lv == level)
            vll = next(r for s, lv, r in rows if s == "vllm" and lv == level)
            print(f"embedded / vllm at {level}: {emb / vll:.2f}")


if __name__ == "__main__":
    main()
