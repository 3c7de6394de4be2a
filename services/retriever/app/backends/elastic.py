"""The Elasticsearch backend: same analysis and BM25 parameters as the embedded one, so both rank alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import elasticsearch
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import BulkIndexError, async_bulk

from selfspec.errors import BackendError, BackendResponseError, BackendTimeout, BackendUnavailable
from selfspec.types import Document, RetrievedDoc
from selfspec.urls import redact_url
from services.retriever.app.backends.base import IndexNotFound, validate_index_name

T = TypeVar("T")

# Mirrors selfspec.retrieval.bm25_embedded.english_analyzer: split on anything but letters and
# digits, lowercase, drop tokens of 40+ chars, Lucene English stopwords, Porter2 stemming.
# One shard keeps BM25 statistics index-wide, as in the embedded index.
INDEX_SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "similarity": {"default": {"type": "BM25", "k1": 1.2, "b": 0.75}},
    "analysis": {
        "tokenizer": {"alnum": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
        "filter": {
            "short_tokens": {"type": "length", "max": 39},
            "english_stop": {"type": "stop", "stopwords": "_english_"},
            "english_porter2": {"type": "stemmer", "language": "porter2"},
        },
        "analyzer": {
            "selfspec_en": {
                "type": "custom", "tokenizer": "alnum",
                "filter": ["short_tokens", "lowercase", "english_stop", "english_porter2"],
            }
        },
    },
}
# title and text are stored in _source only; BM25 runs over their concatenation, as embedded does.
INDEX_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "title": {"type": "text", "index": False, "copy_to": "body"},
        "text": {"type": "text", "index": False, "copy_to": "body"},
        "body": {"type": "text", "analyzer": "selfspec_en", "similarity": "default"},
    },
}


class ElasticBackend:
    name = "elasticsearch"

    def __init__(self, url: str, *, timeout_s: float = 30.0, batch_size: int = 1000,
                 client: AsyncElasticsearch | None = None) -> None:
        self.url = redact_url(url)  # the URL may carry credentials (https://elastic:PASSWORD@es:9200)
        self._es = client or AsyncElasticsearch(url, request_timeout=timeout_s, retry_on_timeout=True)
        self._batch_size = batch_size

    async def _call(self, call: Awaitable[T], index: str | None = None) -> T:
        """The one place Elasticsearch client errors become selfspec errors."""
        try:
            return await call
        except elasticsearch.NotFoundError as err:
            if index is not None:
                raise IndexNotFound(index) from err
            raise BackendResponseError(404, str(err), backend=self.url) from err
        except elasticsearch.ConnectionTimeout as err:
            raise BackendTimeout(f"timed out: {err}", backend=self.url) from err
        except elasticsearch.ConnectionError as err:
            raise BackendUnavailable(f"unreachable: {err}", backend=self.url) from err
        except elasticsearch.ApiError as err:
            raise BackendResponseError(err.meta.status, str(err.body), backend=self.url) from err
        except BulkIndexError as err:
            raise BackendError(f"{len(err.errors)} documents failed: {err.errors[:3]}", backend=self.url) from err

    async def create_index(self, index: str) -> bool:
        validate_index_name(index)
        if await self._call(self._es.indices.exists(index=index)):
            return False
        try:
            await self._call(self._es.indices.create(index=index, settings=INDEX_SETTINGS, mappings=INDEX_MAPPINGS))
        except BackendResponseError as err:
            if "resource_already_exists_exception" in err.body:
                return False  # created concurrently: PUT is idempotent
            raise
        return True

    async def add_documents(self, index: str, documents: list[Document]) -> int:
        validate_index_name(index)
        await self._require(index)
        latest = {doc.id: doc for doc in documents}

        async def actions() -> AsyncIterator[dict[str, Any]]:
            for doc in latest.values():
                # _id = our id, so re-indexing replaces instead of duplicating.
                yield {"_index": index, "_id": doc.id, "_source": {"title": doc.title, "text": doc.text}}

        # refresh=wait_for: when this returns, searches see the documents.
        await self._call(async_bulk(self._es, actions(), chunk_size=self._batch_size, refresh="wait_for"), index)
        return len(latest)

    async def search(self, index: str, query: str, k: int) -> list[RetrievedDoc]:
        validate_index_name(index)
        # `match` analyzes the text and never parses query syntax, so any user text is safe.
        response = await self._call(
            self._es.search(index=index, query={"match": {"body": query}}, size=k, source_includes=["title", "text"]),
            index,
        )
        return [
            RetrievedDoc(id=hit["_id"], score=float(hit["_score"]), title=hit["_source"].get("title", ""),
                         text=hit["_source"].get("text", ""))
            for hit in response["hits"]["hits"]
        ]

    async def count(self, index: str) -> int:
        validate_index_name(index)
        response = await self._call(self._es.count(index=index), index)
        return int(response["count"])

    async def _require(self, index: str) -> None:
        if not await self._call(self._es.indices.exists(index=index)):
            raise IndexNotFound(index)

    async def health(self) -> None:
        await self._call(self._es.cluster.health(timeout="5s"))

    async def aclose(self) -> None:
        await self._es.close()
