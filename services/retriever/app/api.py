"""Routes of the retriever API; the backend and settings come in as dependencies."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi import Path as PathParam

from services.retriever.app.backends import InvalidIndexName, SearchBackend, validate_index_name
from services.retriever.app.config import RetrieverSettings
from services.retriever.app.protocol import (
    DocumentsBodyError,
    Health,
    Hit,
    IndexedResponse,
    IndexInfo,
    SearchRequest,
    SearchResponse,
    parse_documents,
)

router = APIRouter()


def get_backend(request: Request) -> SearchBackend:
    backend: SearchBackend = request.app.state.backend
    return backend


def get_settings(request: Request) -> RetrieverSettings:
    settings: RetrieverSettings = request.app.state.settings
    return settings


def index_name(name: Annotated[str, PathParam(description="lowercase letters, digits, '-', '_'")]) -> str:
    try:
        return validate_index_name(name)
    except InvalidIndexName as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from err


BackendDep = Annotated[SearchBackend, Depends(get_backend)]
SettingsDep = Annotated[RetrieverSettings, Depends(get_settings)]
IndexName = Annotated[str, Depends(index_name)]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes; send smaller batches")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/health")
async def health(backend: BackendDep) -> Health:
    await backend.health()
    return Health(status="ok", backend=backend.name)


@router.put("/indexes/{name}", responses={201: {"model": IndexInfo}})
async def create_index(name: IndexName, backend: BackendDep, response: Response) -> IndexInfo:
    """Create an index; 201 when new, 200 when it already existed (PUT is idempotent)."""
    created = await backend.create_index(name)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return IndexInfo(name=name, count=await backend.count(name))


@router.get("/indexes/{name}")
async def get_index(name: IndexName, backend: BackendDep) -> IndexInfo:
    return IndexInfo(name=name, count=await backend.count(name))


@router.post("/indexes/{name}/documents")
async def add_documents(
    name: IndexName, backend: BackendDep, settings: SettingsDep, request: Request
) -> IndexedResponse:
    """Add or replace documents by id: a JSON array, or NDJSON (`Content-Type: application/x-ndjson`),
    of {id, title?, text}. Every record is validated first: one bad record (named by its 0-based
    array item or 1-based line) rejects the request and nothing of it is written."""
    await backend.count(name)  # 404 before reading a large body for an unknown index
    body = await read_body(request, settings.max_body_bytes)
    try:
        documents = await asyncio.to_thread(parse_documents, body, request.headers.get("content-type", ""))
    except DocumentsBodyError as err:
        raise HTTPException(err.status, err.detail) from err
    indexed = await backend.add_documents(name, documents) if documents else 0
    return IndexedResponse(indexed=indexed, count=await backend.count(name))


@router.post("/indexes/{name}/search")
async def search(name: IndexName, body: SearchRequest, backend: BackendDep) -> SearchResponse:
    docs = await backend.search(name, body.query, body.k)
    return SearchResponse(hits=[Hit(id=d.id, score=d.score, title=d.title, text=d.text) for d in docs])
