"""Open the in-process retriever a config asks for: BM25, dense, or both fused (one place for the
orchestrator and the retriever service)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from selfspec.retrieval.bm25_embedded import EmbeddedRetriever
from selfspec.retrieval.dense import DenseRetriever
from selfspec.retrieval.hybrid import DEFAULT_RRF_K, HybridRetriever

Method = Literal["bm25", "dense", "hybrid"]
InProcessRetriever = EmbeddedRetriever | DenseRetriever | HybridRetriever


def dense_dir(directory: Path, dense_model: str = "") -> Path:
    """The dense index sits next to the BM25 one, named after the model that embedded it."""
    tag = Path(dense_model).name if dense_model else "minilm"
    return directory.with_name(f"{directory.name}.dense-{tag}")


def index_dirs(directory: Path, method: Method, dense_model: str = "") -> list[Path]:
    """The directories an index of this method keeps (all must exist for the index to exist)."""
    return {"bm25": [directory], "dense": [dense_dir(directory, dense_model)],
            "hybrid": [directory, dense_dir(directory, dense_model)]}[method]


async def open_in_process(directory: Path, *, method: Method = "bm25", dense_model: str = "",
                          rrf_k: int = DEFAULT_RRF_K) -> InProcessRetriever:
    if method == "bm25":
        return await EmbeddedRetriever.open(directory)
    dense = await DenseRetriever.open(dense_dir(directory, dense_model), dense_model or None)
    if method == "dense":
        return dense
    return HybridRetriever(await EmbeddedRetriever.open(directory), dense, rrf_k=rrf_k)
