"""Typed async client for the retriever service (services/retriever), one index per client."""

from __future__ import annotations

from typing import Unpack
from urllib.parse import quote

from selfspec.clients.base import ClientOptions, ServiceClient
from selfspec.types import Document, RetrievedDoc

# Documents per POST: well under the service's body limit for passages of a few KB. Writes are
# idempotent by id, so retrying a documents POST is as safe as retrying a search.
ADD_BATCH_SIZE = 1000


class HttpRetriever(ServiceClient):
    """The `Retriever` protocol over HTTP: bounded in-flight requests, bounded retries with backoff."""

    service = "retriever"

    def __init__(self, base_url: str, index: str, **options: Unpack[ClientOptions]) -> None:
        super().__init__(base_url, **options)
        self.index = index

    @property
    def _index_path(self) -> str:
        # Quoted so a stray "/" or ".." in a name reaches the service as a name it will refuse.
        return f"/indexes/{quote(self.index, safe='')}"

    async def ensure_index(self) -> bool:
        """Create the index if missing; True when it was created now."""
        response = await self._request("PUT", self._index_path)
        return response.status_code == 201

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        response = await self._request("POST", f"{self._index_path}/search", json={"query": query, "k": k})
        return [RetrievedDoc.model_validate(hit) for hit in response.json()["hits"]]

    async def add_documents(self, documents: list[Document]) -> int:
        """POST in batches; returns the documents indexed, as the service counts them."""
        indexed = 0
        for start in range(0, len(documents), ADD_BATCH_SIZE):
            batch = [doc.model_dump() for doc in documents[start:start + ADD_BATCH_SIZE]]
            response = await self._request("POST", f"{self._index_path}/documents", json=batch)
            indexed += int(response.json()["indexed"])
        return indexed

    async def count(self) -> int:
        response = await self._request("GET", self._index_path)
        return int(response.json()["count"])
