"""Request and response shapes of the retriever API, and the documents body parser."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfspec.corpus import CorpusRecord
from selfspec.jsonl import describe_validation_error
from selfspec.types import Document

MAX_QUERY_CHARS = 10_000
MAX_K = 100
NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/jsonlines"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Model):
    query: str
    k: int = Field(5, ge=1, le=MAX_K)

    @field_validator("query")
    @classmethod
    def _usable(cls, query: str) -> str:
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not query.strip():
            raise ValueError("query must not be empty or only whitespace")
        return query


class Hit(_Model):
    id: str
    score: float
    title: str
    text: str


class SearchResponse(_Model):
    hits: list[Hit]


class IndexInfo(_Model):
    name: str
    count: int


class IndexedResponse(_Model):
    indexed: int = Field(description="distinct documents of the request now in the index")
    count: int = Field(description="documents in the index after the request")


class Health(_Model):
    status: str
    backend: str


class DocumentsBodyError(ValueError):
    """A documents body that cannot be accepted; nothing of it is written."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(detail)


def parse_documents(body: bytes, content_type: str) -> list[Document]:
    """Validate a whole documents body: a JSON array of {id, title?, text}, or NDJSON of the same."""
    media_type = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        line = body[: err.start].count(b"\n") + 1
        raise DocumentsBodyError(400, f"body is not valid UTF-8 (line {line}, byte {err.start})") from err
    if media_type in NDJSON_TYPES:
        return _parse_ndjson(text)
    if media_type not in ("", "application/json"):
        raise DocumentsBodyError(415, f"unsupported content type {media_type!r}: use application/json "
                                      "(a JSON array) or application/x-ndjson")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise DocumentsBodyError(400, f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    if not isinstance(items, list):
        raise DocumentsBodyError(422, "expected a JSON array of documents")
    return [_document(item, f"item {index}") for index, item in enumerate(items)]


def _parse_ndjson(text: str) -> list[Document]:
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DocumentsBodyError(422, f"line {number}: invalid JSON: {err.msg} at column {err.colno}") from err
        documents.append(_document(item, f"line {number}"))
    return documents


def _document(item: object, where: str) -> Document:
    if not isinstance(item, dict):
        raise DocumentsBodyError(422, f"{where}: expected a JSON object with id, title and text")
    try:
        record = CorpusRecord.model_validate(item)
    except ValidationError as err:
        raise DocumentsBodyError(422, f"{where}: {describe_validation_error(err)}") from err
    return Document(id=record.id, title=record.title, text=record.text)
