"""The retriever service on a real uvicorn server (loopback, free port), its CLI, and its restart story."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from selfspec.clients.retriever_http import HttpRetriever
from selfspec.corpus import iter_corpus
from services.retriever.app.config import RetrieverSettings
from services.retriever.app.main import create_app
from services.retriever.commands import index_command

pytestmark = pytest.mark.integration

REFERENCE_CORPUS = Path(__file__).resolve().parents[2].parent / "shared/reference/corpus/biomed_corpus.jsonl"
BODY_LIMIT = 64 * 1024


@contextmanager
def running_service(settings: RetrieverSettings) -> Iterator[str]:
    """Serve the app with uvicorn in a thread; the socket is bound first, so the port cannot be taken."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("retriever service did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = RetrieverSettings(data_dir=tmp_path_factory.mktemp("svc"), max_body_bytes=BODY_LIMIT)
    with running_service(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def index(service: httpx.Client) -> str:
    """A fresh index per test, holding one document."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    assert service.put(f"/indexes/{name}").status_code == 201
    response = service.post(f"/indexes/{name}/documents", json=[{"id": "keep", "title": "Kept", "text": "original kinase"}])
    assert response.json() == {"indexed": 1, "count": 1}
    return name


def _unchanged(service: httpx.Client, name: str) -> None:
    assert service.get(f"/indexes/{name}").json()["count"] == 1
    hits = service.post(f"/indexes/{name}/search", json={"query": "kinase lymphocyte", "k": 5}).json()["hits"]
    assert [h["id"] for h in hits] == ["keep"]


def test_service_health(service: httpx.Client) -> None:
    assert service.get("/health").json() == {"status": "ok", "backend": "embedded"}


def test_service_put_index_is_201_then_200(service: httpx.Client) -> None:
    first, second = service.put("/indexes/fresh-1"), service.put("/indexes/fresh-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {"name": "fresh-1", "count": 0}


@pytest.mark.parametrize("name", ["Bio", "a.b", "-x", "x" * 65, "a%20b", "%2E%2E", "a%2Fb", "a%5Cb"])
def test_service_invalid_index_names_are_refused(service: httpx.Client, name: str) -> None:
    response = service.put(f"/indexes/{name}")
    assert response.status_code in (404, 422)
    if response.status_code == 422:
        assert "invalid index name" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [("GET", ""), ("POST", "/search"), ("POST", "/documents")])
def test_service_unknown_index_is_404(service: httpx.Client, method: str, path: str) -> None:
    body = {"query": "x", "k": 1} if path == "/search" else []
    response = service.request(method, f"/indexes/nosuch{path}", json=body)
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]


def test_service_accepts_json_array_and_ndjson_idempotently(service: httpx.Client, index: str) -> None:
    ndjson = "\n".join(json.dumps({"id": f"n{i}", "text": f"ndjson passage {i}", "source": "x"}) for i in range(3))
    headers = {"content-type": "application/x-ndjson"}
    assert service.post(f"/indexes/{index}/documents", content=ndjson, headers=headers).json() == {
        "indexed": 3, "count": 4,
    }
    again = service.post(f"/indexes/{index}/documents", content=ndjson, headers=headers)
    assert again.json() == {"indexed": 3, "count": 4}
    hits = service.post(f"/indexes/{index}/search", json={"query": "ndjson passage", "k": 10}).json()["hits"]
    assert sorted(h["id"] for h in hits) == ["n0", "n1", "n2"]
    assert set(hits[0]) == {"id", "score", "title", "text"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


GOOD = {"id": "new", "title": "T", "text": "kinase lymphocyte"}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "detail"),
    [
        (json.dumps([GOOD, {"title": "no id", "text": "x"}]), "application/json", 422, "item 1: field 'id': Field required"),
        (json.dumps([GOOD, {"id": "x", "text": ""}]), "application/json", 422, "item 1: field 'text'"),
        (json.dumps([GOOD, "text"]), "application/json", 422, "item 1: expected a JSON object"),
        (json.dumps(GOOD), "application/json", 422, "expected a JSON array"),
        ("[" + json.dumps(GOOD), "application/json", 400, "invalid JSON"),
        (json.dumps(GOOD) + "\n{broken\n", "application/x-ndjson", 422, "line 2: invalid JSON"),
        (json.dumps(GOOD) + '\n\n{"id": "b"}\n', "application/x-ndjson", 422, "line 3: field 'text': Field required"),
        (json.dumps(GOOD).encode() + b'\n{"id": "b", "text": "caf\xe9"}', "application/x-ndjson", 400, "not valid UTF-8 (line 2"),
        (json.dumps([GOOD]), "text/csv", 415, "unsupported content type"),
    ],
)
def test_service_bad_documents_body_writes_nothing(
    service: httpx.Client, index: str, content: str | bytes, content_type: str, status: int, detail: str
) -> None:
    response = service.post(f"/indexes/{index}/documents", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert detail in response.json()["detail"]
    _unchanged(service, index)


def test_service_documents_body_over_limit_is_413(service: httpx.Client, index: str) -> None:
    big = [{"id": f"b{i}", "text": "kinase " * 100} for i in range(200)]
    response = service.post(f"/indexes/{index}/documents", json=big)
    assert response.status_code == 413 and f"exceeds {BODY_LIMIT} bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming too
        yield json.dumps(big).encode()

    streamed = service.post(f"/indexes/{index}/documents", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    _unchanged(service, index)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "kinase", "k": 0}, "greater than or equal to 1"),
        ({"query": "kinase", "k": 10000}, "less than or equal to 100"),
        ({"query": "   \n", "k": 5}, "must not be empty"),
        ({"query": "", "k": 5}, "must not be empty"),
        ({"query": "kinase " * 150_000, "k": 5}, "query has 1050000 characters; the limit is 10000"),
        ({"k": 5}, "Field required"),
    ],
)
def test_service_bad_search_is_422_with_clear_message(
    service: httpx.Client, index: str, body: dict[str, object], message: str
) -> None:
    response = service.post(f"/indexes/{index}/search", json=body)
    assert response.status_code == 422
    assert message in response.text
    assert len(response.content) < 2000  # the rejected query is not echoed back


def test_service_query_syntax_is_plain_text(service: httpx.Client, index: str) -> None:
    for query in ['kinase: "(unbalanced', "kinase AND NOT OR", "kinase [1 TO 2] {x} ^2 ~ \\"]:
        hits = service.post(f"/indexes/{index}/search", json={"query": query, "k": 3}).json()["hits"]
        assert [h["id"] for h in hits] == ["keep"]


@pytest.mark.skipif(not REFERENCE_CORPUS.is_file(), reason=f"reference corpus absent: {REFERENCE_CORPUS}")
async def test_service_restart_serves_the_same_index(tmp_path: Path) -> None:
    docs = list(iter_corpus(REFERENCE_CORPUS))
    titled = [d for d in docs if len(d.title.split()) >= 3]
    queries = [d.title for d in random.Random(7).sample(titled, 40)]
    settings = RetrieverSettings(data_dir=tmp_path)
    with running_service(settings) as url:
        async with HttpRetriever(url, "biomed") as retriever:
            assert await retriever.ensure_index() is True
            assert await retriever.add_documents(docs) == len(docs)
            before = [await retriever.search(q, 5) for q in queries]
            count = await retriever.count()
    with running_service(settings) as url:
        async with HttpRetriever(url, "biomed") as retriever:
            assert await retriever.ensure_index() is False
            assert await retriever.count() == count == len(docs)
            assert [await retriever.search(q, 5) for q in queries] == before


# ---- CLI: `selfspec index` (the lead registers index_command under that name) ----


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("index")(index_command)
    app.command("unused")(lambda: None)  # two commands keep "index" a subcommand, as in selfspec
    return app


def _run_index(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_cli(), ["index", "--corpus", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    lines = [json.dumps({"id": f"c{i}", "title": f"Title {i}", "text": f"cytokine passage number {i}"}) for i in range(30)]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_index_is_idempotent_and_served_after(tmp_path: Path, small_corpus: Path) -> None:
    data_dir = tmp_path / "data"
    code, out = _run_index(str(small_corpus), "--index", "small", "--data-dir", str(data_dir))
    assert code == 0 and "30 new documents, 30 in the index" in out
    code, out = _run_index(str(small_corpus), "--index", "small", "--data-dir", str(data_dir))
    assert code == 0 and "0 new documents, 30 in the index" in out
    with running_service(RetrieverSettings(data_dir=data_dir)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/indexes/small").json() == {"name": "small", "count": 30}
        hits = client.post("/indexes/small/search", json={"query": "passage number 7", "k": 1}).json()["hits"]
        assert hits[0]["id"] == "c7"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"id": "x1", "text": "ok"}\n{"id": "x2", "text": \n', "bad.jsonl:2: invalid JSON"),
        (b'{"id": "x1", "text": "ok"}\n{"title": "no id", "text": "t"}\n', "bad.jsonl:2: field 'id': Field required"),
        (b'{"id": "x1", "text": "ok"}\n{"id": "x2", "text": "caf\xe9"}\n', "bad.jsonl:2: not valid UTF-8"),
    ],
)
def test_cli_index_bad_corpus_is_refused_and_writes_nothing(
    tmp_path: Path, small_corpus: Path, content: bytes, reason: str
) -> None:
    data_dir = tmp_path / "data"
    assert _run_index(str(small_corpus), "--index", "small", "--data-dir", str(data_dir))[0] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code, out = _run_index(str(bad), "--index", "small", "--data-dir", str(data_dir))
    assert code == 1 and reason in out and "nothing written" in out
    code, out = _run_index(str(small_corpus), "--index", "small", "--data-dir", str(data_dir))
    assert "0 new documents, 30 in the index" in out  # x1 was not written either


def test_cli_index_skip_invalid_lists_and_skips(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "x1", "text": "ok"}\n{"id": "x2"}\n')
    code, out = _run_index(str(bad), "--index", "small", "--data-dir", str(tmp_path), "--skip-invalid")
    assert code == 0 and "skipped" in out and "bad.jsonl:2: field 'text'" in out and "1 new documents" in out


def test_cli_index_over_http_to_a_running_service(tmp_path: Path, small_corpus: Path) -> None:
    with running_service(RetrieverSettings(data_dir=tmp_path)) as url:
        code, out = _run_index(str(small_corpus), "--index", "remote", "--url", url)
        assert code == 0 and "30 new documents" in out
        assert httpx.get(f"{url}/indexes/remote").json()["count"] == 30


def test_cli_index_reports_unreachable_service(small_corpus: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = _run_index(str(small_corpus), "--index", "x", "--url", f"http://127.0.0.1:{port}", "--retries", "1")
    assert code == 1 and "unreachable" in out
