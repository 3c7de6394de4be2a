"""Retrieval benchmark: the embedded BM25 index in process and through the HTTP service, against
rank_bm25 (BM25Okapi, k1=1.2, b=0.75) on the same corpus, tokens and queries, in the same run.

    .venv/bin/python bench/bench_retrieval.py                   # 10k reference corpus, 200 title queries
    .venv/bin/python bench/bench_retrieval.py --million         # also a >= 1M synthetic-passage index

Not a test: it prints figures and ratios (>1 means ours is better) and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
from rank_bm25 import BM25Okapi
from rich.console import Console
from rich.table import Table
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from selfspec.clients.retriever_http import HttpRetriever  # noqa: E402
from selfspec.corpus import iter_corpus  # noqa: E402
from selfspec.retrieval.bm25_embedded import BM25Index, english_analyzer  # noqa: E402
from selfspec.types import Document  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared/reference/corpus/biomed_corpus.jsonl"
TOP_K = 5
HTTP_BATCH = 1000  # documents per POST, as HttpRetriever sends them
CONCURRENCY = 8  # parallel searches for the throughput figures


@dataclass
class Result:
    name: str
    index_s: float
    p50_ms: float
    p99_ms: float
    qps: float  # sequential
    qps_parallel: float | None = None
    top_ids: list[list[str]] | None = None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def timed_each(queries: list[str], search: Callable[[str], list[str]]) -> tuple[list[float], list[list[str]]]:
    latencies, results = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        latencies.append(time.perf_counter() - started)
    return latencies, results


def summarize(name: str, index_s: float, latencies: list[float], results: list[list[str]],
              qps_parallel: float | None = None) -> Result:
    return Result(name, index_s, percentile(latencies, 50), percentile(latencies, 99),
                  len(latencies) / sum(latencies), qps_parallel, results)


def bench_in_process(docs: list[Document], queries: list[str], workdir: Path) -> Result:
    started = time.perf_counter()
    index = BM25Index(workdir / "inproc")
    index.add(docs)
    index_s = time.perf_counter() - started
    latencies, results = timed_each(queries, lambda q: [h.id for h in index.search(q, TOP_K)])
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda q: index.search(q, TOP_K), queries * 2))
    parallel = 2 * len(queries) / (time.perf_counter() - started)
    return summarize("embedded, in process", index_s, latencies, results, parallel)


def bench_rank_bm25(docs: list[Document], queries: list[str]) -> Result:
    analyzer = english_analyzer()  # same tokens as ours: the comparison is of the engines
    started = time.perf_counter()
    model = BM25Okapi([analyzer.analyze(f"{d.title}\n{d.text}") for d in docs], k1=1.2, b=0.75)
    index_s = time.perf_counter() - started
    ids = [d.id for d in docs]

    def search(query: str) -> list[str]:
        scores = model.get_scores(analyzer.analyze(query))
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        return [ids[i] for i in top[np.argsort(-scores[top])]]

    latencies, results = timed_each(queries, search)
    return summarize("rank_bm25 BM25Okapi", index_s, latencies, results)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@retry(retry=retry_if_exception_type(httpx.TransportError), stop=stop_after_delay(30), wait=wait_fixed(0.1), reraise=True)
def _wait_ready(url: str) -> None:
    httpx.get(f"{url}/health", timeout=1.0).raise_for_status()


def _start_service(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The service in its own process, so client and server do not share a GIL."""
    port = _free_port()
    env = {**os.environ, "SELFSPEC_RETRIEVER__DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "uvicorn", "--factory", "services.retriever.app.main:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url)
    return process, url


async def _http_run(url: str, docs: list[Document], queries: list[str]) -> Result:
    async with HttpRetriever(url, "bench", timeout_s=300, in_flight=CONCURRENCY) as client:
        started = time.perf_counter()
        await client.ensure_index()
        await client.add_documents(docs)
        index_s = time.perf_counter() - started
        latencies, results = [], []
        for query in queries:
            started = time.perf_counter()
            results.append([h.id for h in await client.search(query, TOP_K)])
            latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(client.search(q, TOP_K) for q in queries * 2))
        parallel = 2 * len(queries) / (time.perf_counter() - started)
    return summarize("embedded, HTTP service", index_s, latencies, results, parallel)


def bench_http(docs: list[Document], queries: list[str], workdir: Path) -> Result:
    process, url = _start_service(workdir / "service")
    try:
        return asyncio.run(_http_run(url, docs, queries))
    finally:
        process.terminate()
        process.wait(timeout=30)


def agreement(a: Result, b: Result) -> float:
    assert a.top_ids is not None and b.top_ids is not None
    return statistics.mean(x[:1] == y[:1] for x, y in zip(a.top_ids, b.top_ids, strict=True))


def report(console: Console, results: list[Result], baseline: Result, n_docs: int, n_queries: int) -> None:
    table = Table(title=f"BM25 top-{TOP_K}: {n_docs:,} docs, {n_queries} queries (ratio = vs rank_bm25, >1 better)")
    for column in ("engine", "index s", "p50 ms", "p99 ms", "QPS seq", f"QPS x{CONCURRENCY}",
                   "index ratio", "p50 ratio", "QPS ratio", "top-1 agree"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.name, f"{r.index_s:.2f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.qps:,.0f}",
            f"{r.qps_parallel:,.0f}" if r.qps_parallel else "-",
            f"{baseline.index_s / r.index_s:.1f}x", f"{baseline.p50_ms / r.p50_ms:.1f}x",
            f"{r.qps / baseline.qps:.1f}x", f"{agreement(r, baseline):.2f}",
        )
    console.print(table)


def synthetic_passages(vocabulary: list[str], weights: np.ndarray, n: int, *, words: int = 60,
                       batch: int = 50_000) -> Iterator[list[Document]]:
    """Passages drawn from the corpus' word distribution, so postings lists have realistic skew."""
    rng = np.random.default_rng(0)
    vocab = np.array(vocabulary, dtype=object)
    for start in range(0, n, batch):
        picks = rng.choice(len(vocab), size=(min(batch, n - start), words), p=weights)
        yield [Document(id=f"syn-{start + i}", text=" ".join(vocab[row])) for i, row in enumerate(picks)]


def bench_million(console: Console, docs: list[Document], n: int, workdir: Path) -> None:
    counts: dict[str, int] = {}
    for doc in docs:
        for word in doc.text.lower().split():
            counts[word] = counts.get(word, 0) + 1
    vocabulary = list(counts)
    weights = np.array([counts[w] for w in vocabulary], dtype=float)
    weights /= weights.sum()
    index = BM25Index(workdir / "million")
    process = psutil.Process()
    started = time.perf_counter()
    for batch in synthetic_passages(vocabulary, weights, n):
        index.add(batch)
        console.print(f"  {index.count():,} passages, {time.perf_counter() - started:.0f} s", highlight=False)
    build_s = time.perf_counter() - started
    rng = random.Random(1)
    queries = [" ".join(rng.sample(vocabulary[:20_000], 5)) for _ in range(200)]
    latencies, _ = timed_each(queries, lambda q: [h.id for h in index.search(q, TOP_K)])
    disk = sum(f.stat().st_size for f in index.directory.rglob("*") if f.is_file())
    console.print(
        f"[bold]million:[/bold] {index.count():,} passages indexed in {build_s:.0f} s "
        f"({index.count() / build_s:,.0f} docs/s); RSS {process.memory_info().rss / 2**20:,.0f} MiB; "
        f"disk {disk / 2**20:,.0f} MiB; top-{TOP_K} p50 {percentile(latencies, 50):.2f} ms, "
        f"p99 {percentile(latencies, 99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--million", action="store_true", help="also build a >= 1M synthetic passage index")
    parser.add_argument("--million-size", type=int, default=1_000_000)
    args = parser.parse_args()
    console = Console(width=150)  # the table is wide; keep it readable when piped to a file
    docs = list(iter_corpus(args.corpus))
    titled = [d for d in docs if len(d.title.split()) >= 3]
    queries = [d.title for d in random.Random(0).sample(titled, args.queries)]
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        workdir = Path(tmp)
        baseline = bench_rank_bm25(docs, queries)
        results = [bench_in_process(docs, queries, workdir), bench_http(docs, queries, workdir), baseline]
        report(console, results, baseline, len(docs), len(queries))
        http, inproc = results[1], results[0]
        console.print(f"HTTP overhead vs in process: p50 +{http.p50_ms - inproc.p50_ms:.2f} ms, "
                      f"index time x{http.index_s / inproc.index_s:.1f}")
        if args.million:
            bench_million(console, docs, args.million_size, workdir)


if __name__ == "__main__":
    main()
