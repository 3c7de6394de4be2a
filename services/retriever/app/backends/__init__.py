"""Backends behind the retriever API, picked by settings."""

from __future__ import annotations

from services.retriever.app.backends.base import (
    IndexHandle,
    IndexNotFound,
    InvalidIndexName,
    SearchBackend,
    validate_index_name,
)
from services.retriever.app.config import RetrieverSettings

__all__ = [
    "IndexHandle", "IndexNotFound", "InvalidIndexName", "SearchBackend", "build_backend", "validate_index_name",
]


def build_backend(settings: RetrieverSettings) -> SearchBackend:
    # Imported here so the embedded default never loads the Elasticsearch client, and vice versa.
    if settings.backend == "elasticsearch":
        from services.retriever.app.backends.elastic import ElasticBackend

        return ElasticBackend(settings.es_url, timeout_s=settings.es_timeout_s, batch_size=settings.batch_size)
    from services.retriever.app.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(settings.data_dir, method=settings.method, dense_model=settings.dense_model,
                           rrf_k=settings.rrf_k)
