"""Hybrid retrieval: BM25 and dense rankings merged by reciprocal rank fusion (Cormack et al., 2009).

RRF scores a document by sum(1 / (rrf_k + rank)) over the rankings it appears in (rank from 1).
It needs no score calibration between BM25 and cosine similarity, which live on unrelated scales;
rrf_k = 60 is the value of the original paper and of Elasticsearch's `rrf` retriever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from selfspec.clients.protocols import Retriever
from selfspec.types import Document, RetrievedDoc

DEFAULT_RRF_K = 60
# Each ranking contributes this many candidates per requested hit (at least MIN_CANDIDATES).
CANDIDATES_PER_HIT = 4
MIN_CANDIDATES = 20


def reciprocal_rank_fusion(rankings: Sequence[Sequence[RetrievedDoc]], k: int,
                           rrf_k: int = DEFAULT_RRF_K) -> list[RetrievedDoc]:
    """Top-k of the fused ranking; ties keep the order of first appearance (first ranking first)."""
    scores: dict[str, float] = {}
    first_seen: dict[str, RetrievedDoc] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc.id] = scores.get(doc.id, 0.0) + 1.0 / (rrf_k + rank)
            first_seen.setdefault(doc.id, doc)
    order = sorted(scores, key=lambda doc_id: -scores[doc_id])  # stable: ties stay in first-seen order
    return [first_seen[doc_id].model_copy(update={"score": scores[doc_id]}) for doc_id in order[:k]]


class HybridRetriever:
    """The `Retriever` protocol over a BM25 and a dense retriever holding the same documents."""

    def __init__(self, lexical: Retriever, dense: Retriever, *, rrf_k: int = DEFAULT_RRF_K) -> None:
        self.lexical, self.dense, self.rrf_k = lexical, dense, rrf_k

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        depth = max(k * CANDIDATES_PER_HIT, MIN_CANDIDATES)
        lexical, dense = await asyncio.gather(self.lexical.search(query, depth), self.dense.search(query, depth))
        return reciprocal_rank_fusion([lexical, dense], k, self.rrf_k)

    async def add_documents(self, documents: list[Document]) -> int:
        indexed = await asyncio.gather(self.lexical.add_documents(documents), self.dense.add_documents(documents))
        return min(indexed)

    async def count(self) -> int:
        return min(await asyncio.gather(self.lexical.count(), self.dense.count()))

    async def aclose(self) -> None:
        for part in (self.lexical, self.dense):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()
