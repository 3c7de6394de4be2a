from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfspec.clients.protocols import Retriever
from selfspec.corpus import iter_corpus
from selfspec.retrieval.bm25_embedded import AddResult, BM25Index, EmbeddedRetriever, index_dir
from selfspec.types import Document

REFERENCE_CORPUS = Path(__file__).resolve().parents[2].parent / "shared/reference/corpus/biomed_corpus.jsonl"
needs_corpus = pytest.mark.skipif(not REFERENCE_CORPUS.is_file(), reason=f"reference corpus absent: {REFERENCE_CORPUS}")

DOCS = [
    Document(id="d1", title="Kinase signaling", text="protein kinase activation in lymphocytes"),
    Document(id="d2", title="Receptors", text="receptor binding and receptor expression"),
    Document(id="d3", title="", text="cells running quickly through tissue"),
]


@pytest.fixture
def index(tmp_path: Path) -> BM25Index:
    idx = BM25Index(tmp_path / "idx")
    idx.add(DOCS)
    return idx


def _lucene_bm25(tf: int, df: int, n_docs: int, doc_len: int, avg_len: float) -> float:
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * doc_len / avg_len))


def test_bm25_scores_follow_lucene_formula_k1_1_2_b_0_75(tmp_path: Path) -> None:
    idx = BM25Index(tmp_path / "idx")
    idx.add([
        Document(id="a", text="apple apple banana"),
        Document(id="b", text="apple cherry cherry cherry date elderberry"),
        Document(id="c", text="fig grape"),
    ])
    avg = (3 + 6 + 2) / 3
    hits = {h.id: h.score for h in idx.search("apple", 3)}
    assert hits["a"] == pytest.approx(_lucene_bm25(2, 2, 3, 3, avg), rel=1e-4)
    assert hits["b"] == pytest.approx(_lucene_bm25(1, 2, 3, 6, avg), rel=1e-4)
    assert "c" not in hits


def test_bm25_analyzer_stems_and_drops_stopwords(index: BM25Index) -> None:
    assert [h.id for h in index.search("runs", 5)] == ["d3"]
    assert [h.id for h in index.search("The receptors!", 1)] == ["d2"]
    assert index.search("the of and", 5) == []


def test_bm25_indexes_title_and_text(index: BM25Index) -> None:
    top = index.search("signaling", 1)[0]
    assert (top.id, top.title, top.text) == ("d1", "Kinase signaling", "protein kinase activation in lymphocytes")


@pytest.mark.parametrize(
    "query",
    ['"unbalanced quote', "field:value", "(kinase", "kinase AND OR NOT", "+-!^~*?\\/ &&||", "[1 TO 5] {x}",
     "kinase: (protein) \"activation\"", "ümlaut kinase ☃", "\x00\n\t kinase"],
)
def test_bm25_any_query_text_is_safe(index: BM25Index, query: str) -> None:
    hits = index.search(query, 3)
    if "kinase" in query:
        assert hits[0].id == "d1"


def test_bm25_search_rejects_k_below_one(index: BM25Index) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search("kinase", 0)


def test_bm25_add_is_idempotent_by_id(index: BM25Index) -> None:
    assert index.add(DOCS) == AddResult(added=0, replaced=0, unchanged=3)
    changed = Document(id="d1", title="Kinase signaling", text="entirely new wording about phosphatase")
    assert index.add([changed, Document(id="d4", text="new doc")]) == AddResult(added=1, replaced=1, unchanged=0)
    assert index.count() == 4
    assert [h.id for h in index.search("phosphatase", 5)] == ["d1"]
    assert index.search("lymphocytes", 5) == []


def test_bm25_last_copy_of_an_id_in_one_call_wins(tmp_path: Path) -> None:
    idx = BM25Index(tmp_path / "idx")
    result = idx.add([Document(id="x", text="first version"), Document(id="x", text="second version")])
    assert result.indexed == 1 and idx.count() == 1
    assert idx.search("second", 1)[0].text == "second version"


def test_bm25_index_persists_across_reopen(index: BM25Index) -> None:
    before = index.search("receptor kinase", 3)
    reopened = BM25Index(index.directory)
    assert reopened.count() == 3
    assert reopened.search("receptor kinase", 3) == before


def test_bm25_searches_run_while_indexing(tmp_path: Path) -> None:
    idx = BM25Index(tmp_path / "idx")
    idx.add(DOCS)
    errors: list[Exception] = []
    done = threading.Event()

    def search_until_done() -> None:
        while not done.is_set():
            try:
                assert idx.search("kinase", 5)[0].id == "d1"
            except Exception as err:  # collected: a thread's failure must fail the test
                errors.append(err)
                return

    readers = [threading.Thread(target=search_until_done) for _ in range(2)]
    for reader in readers:
        reader.start()
    for batch in range(10):
        idx.add([Document(id=f"n{batch}-{i}", text=f"filler text number {i}") for i in range(50)])
    done.set()
    for reader in readers:
        reader.join()
    assert errors == [] and idx.count() == 3 + 500


def test_index_dir_refuses_path_tricks(tmp_path: Path) -> None:
    assert index_dir(tmp_path, "bio") == tmp_path / "indexes" / "bio"
    for name in ("", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError):
            index_dir(tmp_path, name)


async def test_embedded_retriever_satisfies_retriever_protocol(tmp_path: Path) -> None:
    embedded = await EmbeddedRetriever.open(tmp_path / "idx")
    retriever: Retriever = embedded  # mypy checks the signatures; the calls below, the behaviour
    assert await retriever.add_documents(DOCS) == 3
    assert await retriever.add_documents(DOCS) == 3  # indexed (already there), not re-written
    assert await retriever.count() == 3
    assert [h.id for h in await retriever.search("kinase", 2)] == ["d1"]
    await embedded.aclose()


@pytest.fixture(scope="module")
def reference_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BM25Index, list[Document]]]:
    if not REFERENCE_CORPUS.is_file():
        pytest.skip(f"reference corpus absent: {REFERENCE_CORPUS}")
    docs = list(iter_corpus(REFERENCE_CORPUS))
    idx = BM25Index(tmp_path_factory.mktemp("reference") / "idx")
    idx.add(docs)
    yield idx, docs


def title_queries(docs: list[Document], n: int = 200, seed: int = 13) -> list[Document]:
    """Documents whose title (>= 3 words) is used as a query; only ~2k of 10k have real titles."""
    titled = [d for d in docs if len(d.title.split()) >= 3]
    return random.Random(seed).sample(titled, n)


@needs_corpus
def test_bm25_title_query_finds_its_document_in_top5(reference_index: tuple[BM25Index, list[Document]]) -> None:
    idx, docs = reference_index
    assert idx.count() == len(docs) == 10_148
    sample = title_queries(docs)
    found = sum(doc.id in {h.id for h in idx.search(doc.title, 5)} for doc in sample)
    assert found / len(sample) >= 0.9


@needs_corpus
def test_bm25_reference_index_reopens_with_same_results(reference_index: tuple[BM25Index, list[Document]]) -> None:
    idx, docs = reference_index
    reopened = BM25Index(idx.directory)
    for doc in title_queries(docs, n=30, seed=5):
        assert reopened.search(doc.title, 5) == idx.search(doc.title, 5)
