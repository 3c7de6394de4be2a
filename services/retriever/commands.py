"""CLI commands of the retriever: `selfspec index` and `selfspec serve retriever` (registered in selfspec.cli).

    selfspec index corpora/biomedical.jsonl --index biomedical              # embedded, in process
    selfspec index corpus.jsonl --index bio --url http://127.0.0.1:8002     # through a running service
    selfspec index corpus.jsonl --index bio --backend elasticsearch --es-url http://localhost:9200
    selfspec serve retriever --port 8002 --data-dir .selfspec
    SELFSPEC_SERVICE_TOKEN=... selfspec serve retriever --host 0.0.0.0     # any other interface needs a token
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, Literal, Protocol

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from selfspec.auth import ServiceTokens, bind_refusal
from selfspec.clients.retriever_http import HttpRetriever
from selfspec.console import print_error
from selfspec.corpus import CsvColumns, iter_corpus
from selfspec.errors import InputFileError, SelfSpecError
from selfspec.progress import RateColumn
from selfspec.types import Document
from selfspec.urls import redact_url
from services.retriever.app.backends import IndexHandle, build_backend, validate_index_name
from services.retriever.app.config import DEFAULT_DATA_DIR, RetrieverSettings

log = logging.getLogger(__name__)

BackendName = Literal["embedded", "elasticsearch"]
SHOWN_SKIPS = 50  # bad lines printed in full; the rest are counted


class _IndexTarget(Protocol):
    async def ensure_index(self) -> bool: ...
    async def add_documents(self, documents: list[Document]) -> int: ...
    async def count(self) -> int: ...
    async def aclose(self) -> None: ...


def index_command(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="a .jsonl/.csv/.tsv file or a folder of .txt/.md files")],
    index: Annotated[str, typer.Option("--index", "-i", help="index name")] = "biomedical",
    data_dir: Annotated[Path, typer.Option(help="where embedded indexes live")] = DEFAULT_DATA_DIR,
    backend: Annotated[BackendName, typer.Option(help="in-process backend")] = "embedded",
    url: Annotated[str | None, typer.Option(help="retriever service URL: index over HTTP instead")] = None,
    es_url: Annotated[str | None, typer.Option(help="Elasticsearch URL (backend elasticsearch)")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad records (listed) instead of refusing")] = False,
    id_column: Annotated[str, typer.Option(help="CSV column holding the id")] = "id",
    title_column: Annotated[str, typer.Option(help="CSV column holding the title")] = "title",
    text_column: Annotated[str, typer.Option(help="CSV column holding the text")] = "text",
    batch_size: Annotated[int, typer.Option(min=1, help="documents per write (one commit each)")] = 5000,
    retries: Annotated[int, typer.Option(min=0, help="retries of a failed call to the service (--url)")] = 4,
) -> None:
    """Import a corpus into a BM25 index. Idempotent by document id: re-running adds nothing.

    Every record is checked before anything is written; with bad records the import is refused
    (each named as file:line) unless --skip-invalid is given.
    """
    console = Console()
    columns = CsvColumns(id=id_column, title=title_column, text=text_column)
    try:
        validate_index_name(index)
        valid = _check_corpus(console, corpus, columns, skip_invalid=skip_invalid)
        target = _target(index, data_dir=data_dir, backend=backend, url=url, es_url=es_url, retries=retries)
        before, after, indexed, seconds = asyncio.run(
            _import(console, target, iter_corpus(corpus, skipped=[], columns=columns), valid, batch_size)
        )
    except (SelfSpecError, ValueError) as err:
        print_error(console, err)
        raise typer.Exit(1) from err
    where = redact_url(url or (es_url or "elasticsearch" if backend == "elasticsearch" else str(data_dir)))
    console.print(
        f"Indexed {indexed:,} documents into [bold]{index}[/bold] ({where}) in {seconds:.1f} s: "
        f"{after - before:,} new documents, {after:,} in the index."
    )


def _check_corpus(console: Console, corpus: Path, columns: CsvColumns, *, skip_invalid: bool) -> int:
    """First pass: validate everything, list bad records, return how many documents are good."""
    skipped: list[InputFileError] = []
    valid = sum(1 for _ in iter_corpus(corpus, skipped=skipped, columns=columns))
    label = "skipped" if skip_invalid else "invalid"
    for err in skipped[:SHOWN_SKIPS]:
        print_error(console, err, label=label, style="yellow")
    if len(skipped) > SHOWN_SKIPS:
        console.print(f"[yellow]... and {len(skipped) - SHOWN_SKIPS} more bad records[/yellow]")
    if skipped and not skip_invalid:
        raise InputFileError(str(corpus), None, f"{len(skipped)} bad records, nothing written "
                                                "(fix them, or pass --skip-invalid to index the rest)")
    if not valid:
        raise InputFileError(str(corpus), None, "no documents to index")
    return valid


def _target(
    index: str, *, data_dir: Path, backend: BackendName, url: str | None, es_url: str | None, retries: int
) -> _IndexTarget:
    if url:
        return HttpRetriever(url, index, timeout_s=120.0, retries=retries, api_key=ServiceTokens().service)
    return IndexHandle(build_backend(_settings(backend=backend, data_dir=data_dir, es_url=es_url)), index)


def _settings(*, backend: BackendName, data_dir: Path, es_url: str | None) -> RetrieverSettings:
    """Flags over env vars (SELFSPEC_RETRIEVER__*): an absent --es-url leaves the env's in place."""
    try:
        if es_url:
            return RetrieverSettings(backend=backend, data_dir=data_dir, es_url=es_url)
        return RetrieverSettings(backend=backend, data_dir=data_dir)
    except ValidationError as err:
        raise ValueError("; ".join(e["msg"] for e in err.errors())) from err


def _batches(documents: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while batch := list(islice(documents, size)):
        yield batch


async def _import(
    console: Console, target: _IndexTarget, documents: Iterator[Document], total: int, batch_size: int
) -> tuple[int, int, int, float]:
    """Second pass: write in batches with progress. Returns (count before, count after, indexed, seconds)."""
    started = time.perf_counter()
    try:
        await target.ensure_index()
        before = await target.count()
        indexed = 0
        columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), RateColumn(" docs/s", decimals=0),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("index", total=total)
            for batch in _batches(documents, batch_size):
                indexed += await target.add_documents(batch)
                progress.advance(task, len(batch))
        after = await target.count()
    finally:
        await target.aclose()
    log.info("indexed %d documents (%d new)", indexed, after - before)
    return before, after, indexed, time.perf_counter() - started


def serve_retriever_command(
    host: Annotated[str, typer.Option(help="interface to bind; non-loopback needs SELFSPEC_SERVICE_TOKEN")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="port")] = 8002,
    data_dir: Annotated[Path, typer.Option(help="where embedded indexes live")] = DEFAULT_DATA_DIR,
    backend: Annotated[BackendName, typer.Option(help="search backend")] = "embedded",
    es_url: Annotated[str | None, typer.Option(help="Elasticsearch URL (backend elasticsearch)")] = None,
) -> None:
    """Serve the retriever API (PUT/GET /indexes/{name}, POST .../documents, POST .../search, GET /health)."""
    import uvicorn

    from services.retriever.app.main import create_app

    token = ServiceTokens().service
    refusal = bind_refusal(host, has_token=token is not None, token_env="SELFSPEC_SERVICE_TOKEN")
    if refusal is not None:
        raise typer.BadParameter(refusal, param_hint="--host")
    try:
        settings = _settings(backend=backend, data_dir=data_dir, es_url=es_url)
    except ValueError as err:
        Console().print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    uvicorn.run(create_app(settings, token=token), host=host, port=port, log_level="info")
