"""The embedded backend: one in-process index per name under `data_dir/indexes/` (BM25 by default;
dense or hybrid per the service's `method`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from selfspec.retrieval.bm25_embedded import index_dir
from selfspec.retrieval.factory import InProcessRetriever, Method, index_dirs, open_in_process
from selfspec.types import Document, RetrievedDoc
from services.retriever.app.backends.base import IndexNotFound, validate_index_name


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, data_dir: Path, *, method: Method = "bm25", dense_model: str = "", rrf_k: int = 60) -> None:
        self.data_dir = Path(data_dir)
        self.method, self.dense_model, self.rrf_k = method, dense_model, rrf_k
        self._open: dict[str, InProcessRetriever] = {}
        self._create_lock = asyncio.Lock()

    async def _open_index(self, path: Path) -> InProcessRetriever:
        return await open_in_process(path, method=self.method, dense_model=self.dense_model, rrf_k=self.rrf_k)

    def _exists(self, path: Path) -> bool:
        return all(p.is_dir() for p in index_dirs(path, self.method, self.dense_model))

    def _path(self, index: str) -> Path:
        return index_dir(self.data_dir, validate_index_name(index))

    async def _get(self, index: str) -> InProcessRetriever:
        if index in self._open:
            return self._open[index]
        path = self._path(index)
        if not self._exists(path):
            raise IndexNotFound(index)
        async with self._create_lock:
            # Opened lazily (and once) so an index built by `selfspec index` is served after restart.
            if index not in self._open:
                self._open[index] = await self._open_index(path)
        return self._open[index]

    async def create_index(self, index: str) -> bool:
        path = self._path(index)
        async with self._create_lock:
            created = not self._exists(path)
            if index not in self._open:
                self._open[index] = await self._open_index(path)
        return created

    async def add_documents(self, index: str, documents: list[Document]) -> int:
        return await (await self._get(index)).add_documents(documents)

    async def search(self, index: str, query: str, k: int) -> list[RetrievedDoc]:
        return await (await self._get(index)).search(query, k)

    async def count(self, index: str) -> int:
        return await (await self._get(index)).count()

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        for retriever in self._open.values():
            await retriever.aclose()
        self._open.clear()
