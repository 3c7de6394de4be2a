"""Dense and hybrid vs BM25 retrieval on the reference corpus: title-query recall@5 and latency, same run.

    .venv/bin/python bench/bench_dense.py                 # 10k reference corpus, 200 title queries

A title query "finds" its document when the document is in the top 5 (the same check as the retriever
contract test). Dense: all-MiniLM-L6-v2 (packaged) + exact faiss inner product; hybrid: RRF of both.
Not a test: it prints figures and ratios against BM25 and asserts nothing. Needs the `dense` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from bench.bench_retrieval import DEFAULT_CORPUS, TOP_K, percentile  # noqa: E402
from selfspec.corpus import iter_corpus  # noqa: E402
from selfspec.retrieval.factory import open_in_process  # noqa: E402
from selfspec.types import Document  # noqa: E402


async def measure(method: str, directory: Path, docs: list[Document], queries: list[Document]) -> dict[str, float]:
    started = time.perf_counter()
    retriever = await open_in_process(directory, method=method)  # type: ignore[arg-type]
    await retriever.add_documents(docs)
    index_s = time.perf_counter() - started
    latencies, found = [], 0
    for doc in queries:
        started = time.perf_counter()
        hits = await retriever.search(doc.title, TOP_K)
        latencies.append(time.perf_counter() - started)
        found += doc.id in {h.id for h in hits}
    await retriever.aclose()
    return {"index_s": index_s, "recall": found / len(queries), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "qps": len(latencies) / sum(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    docs = list(iter_corpus(args.corpus))
    titled = [d for d in docs if len(d.title.split()) >= 3]
    queries = random.Random(2310).sample(titled, args.queries)  # the contract test's sample
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        directory = Path(tmp) / "indexes" / "bench"
        for method in ("bm25", "dense", "hybrid"):  # hybrid reuses both indexes: its index time is ~0
            results[method] = asyncio.run(measure(method, directory, docs, queries))
    base = results["bm25"]
    table = Table(title=f"title queries, top-{TOP_K}: {len(docs):,} docs, {len(queries)} queries (ratios vs BM25)")
    for column in ("method", "recall@5", "index s", "p50 ms", "p99 ms", "QPS", "recall ratio", "p50 ratio"):
        table.add_column(column, justify="right")
    for method, r in results.items():
        table.add_row(method, f"{r['recall']:.3f}", f"{r['index_s']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['qps']:,.0f}", f"{r['recall'] / base['recall']:.2f}", f"{r['p50_ms'] / base['p50_ms']:.1f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
