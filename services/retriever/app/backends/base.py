"""What the API needs from a search backend, and the rules every backend shares."""

from __future__ import annotations

import re
from typing import Protocol

from selfspec.errors import SelfSpecError
from selfspec.settings import INDEX_NAME_PATTERN
from selfspec.types import Document, RetrievedDoc

_INDEX_NAME = re.compile(INDEX_NAME_PATTERN)


class IndexNotFound(SelfSpecError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"index {name!r} does not exist; create it with PUT /indexes/{name}")


class InvalidIndexName(SelfSpecError, ValueError):
    pass


def validate_index_name(name: str) -> str:
    """Lowercase letters, digits, '-' and '_' (1-64, starting alphanumeric): safe as a path and in ES."""
    if not _INDEX_NAME.fullmatch(name):
        raise InvalidIndexName(
            f"invalid index name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


class SearchBackend(Protocol):
    """Named BM25 indexes. Writes are idempotent by document id; search sees every finished write."""

    name: str

    async def create_index(self, index: str) -> bool:
        """Create `index` if missing; True when it was created now."""
        ...

    async def add_documents(self, index: str, documents: list[Document]) -> int:
        """Add or replace by id; returns the distinct documents indexed. Raises IndexNotFound."""
        ...

    async def search(self, index: str, query: str, k: int) -> list[RetrievedDoc]: ...

    async def count(self, index: str) -> int: ...

    async def health(self) -> None:
        """Returns when the backend can serve; raises BackendUnavailable otherwise."""
        ...

    async def aclose(self) -> None: ...


class IndexHandle:
    """One index of a backend as a `Retriever` (what the orchestrator and `selfspec index` use)."""

    def __init__(self, backend: SearchBackend, index: str) -> None:
        self.backend, self.index = backend, validate_index_name(index)

    async def ensure_index(self) -> bool:
        return await self.backend.create_index(self.index)

    async def search(self, query: str, k: int) -> list[RetrievedDoc]:
        return await self.backend.search(self.index, query, k)

    async def add_documents(self, documents: list[Document]) -> int:
        return await self.backend.add_documents(self.index, documents)

    async def count(self) -> int:
        return await self.backend.count(self.index)

    async def aclose(self) -> None:
        await self.backend.aclose()
