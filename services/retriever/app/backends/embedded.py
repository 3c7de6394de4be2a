"""The embedded backend: one tantivy `BM25Index` per name under `data_dir/indexes/`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from selfspec.retrieval.bm25_embedded import EmbeddedRetriever, index_dir
from selfspec.types import Document, RetrievedDoc
from services.retriever.app.backends.base import IndexNotFound, validate_index_name


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._open: dict[str, EmbeddedRetriever] = {}
        self._create_lock = asyncio.Lock()

    def _path(self, index: str) -> Path:
        return index_dir(self.data_dir, validate_index_name(index))

    async def _get(self, index: str) -> EmbeddedRetriever:
        if index in self._open:
            return self._open[index]
        path = self._path(index)
        if not path.is_dir():
            raise IndexNotFound(index)
        async with self._create_lock:
            # Opened lazily (and once) so an index built by `selfspec index` is served after restart.
            if index not in self._open:
                self._open[index] = await EmbeddedRetriever.open(path)
        return self._open[index]

    async def create_index(self, index: str) -> bool:
        path = self._path(index)
        async with self._create_lock:
            created = not path.is_dir()
            if index not in self._open:
                self._open[index] = await EmbeddedRetriever.open(path)
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
