from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from selfspec.clients.retriever_http import ADD_BATCH_SIZE, HttpRetriever
from selfspec.errors import BackendOverloaded, BackendResponseError, BackendTimeout, BackendUnavailable
from selfspec.types import Document

HIT = {"id": "d1", "score": 1.5, "title": "T", "text": "x"}


def _client(handler: httpx.MockTransport, **kwargs: int) -> HttpRetriever:
    return HttpRetriever("http://retriever", "bio", transport=handler, backoff_s=0.0, **kwargs)


def _scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retriever_http_retries_transient_statuses(status: int) -> None:
    transport, seen = _scripted(httpx.Response(status, json={"detail": "busy"}), httpx.Response(200, json={"hits": [HIT]}))
    async with _client(transport) as client:
        hits = await client.search("kinase", 5)
        assert [h.id for h in hits] == ["d1"] and client.retry_count == 1
    assert json.loads(seen[0].content) == {"query": "kinase", "k": 5}
    assert seen[0].url.path == "/indexes/bio/search"


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_retriever_http_does_not_retry_other_errors(status: int) -> None:
    transport, seen = _scripted(httpx.Response(status, json={"detail": "k: must be <= 100"}))
    async with _client(transport) as client:
        with pytest.raises(BackendResponseError) as caught:
            await client.search("kinase", 500)
    assert len(seen) == 1 and caught.value.status == status and caught.value.body == "k: must be <= 100"
    assert not isinstance(caught.value, BackendOverloaded)


@pytest.mark.parametrize(
    ("failure", "error"),
    [(httpx.ConnectError("refused"), BackendUnavailable), (httpx.ReadTimeout("slow"), BackendTimeout)],
)
async def test_retriever_http_translates_transport_errors_after_bounded_retries(
    failure: Exception, error: type[Exception]
) -> None:
    transport, seen = _scripted(failure, failure, failure)
    async with _client(transport, retries=2) as client:
        with pytest.raises(error):
            await client.count()
    assert len(seen) == 3


async def test_retriever_http_overloaded_after_retries_is_backend_overloaded() -> None:
    transport, _ = _scripted(*(httpx.Response(503, text="down") for _ in range(2)))
    async with _client(transport, retries=1) as client:
        with pytest.raises(BackendOverloaded):
            await client.count()


async def test_retriever_http_bounds_requests_in_flight() -> None:
    active, peak = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return httpx.Response(200, json={"hits": []})

    async with _client(httpx.MockTransport(handler), in_flight=3) as client:
        await asyncio.gather(*(client.search(f"q{i}", 5) for i in range(20)))
    assert peak == 3


async def test_retriever_http_posts_documents_in_batches() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)))
        return httpx.Response(200, json={"indexed": sizes[-1], "count": sum(sizes)})

    docs = [Document(id=f"d{i}", text="x") for i in range(2 * ADD_BATCH_SIZE + 5)]
    async with _client(httpx.MockTransport(handler)) as client:
        assert await client.add_documents(docs) == len(docs)
    assert sizes == [ADD_BATCH_SIZE, ADD_BATCH_SIZE, 5]


async def test_retriever_http_quotes_the_index_name() -> None:
    transport, seen = _scripted(httpx.Response(422, json={"detail": "invalid index name"}))
    client = HttpRetriever("http://retriever", "../etc", transport=transport)
    with pytest.raises(BackendResponseError):
        await client.count()
    await client.aclose()
    assert seen[0].url.raw_path == b"/indexes/..%2Fetc"


def test_elasticsearch_url_password_never_reaches_errors() -> None:
    from selfspec.urls import redact_url
    from services.retriever.app.backends.elastic import ElasticBackend

    assert redact_url("https://elastic:s3cret@es:9200/x") == "https://elastic:***@es:9200/x"
    assert redact_url("http://[::1]:9200") == "http://[::1]:9200"
    assert redact_url("http://u:p@[::1]:9200") == "http://u:***@[::1]:9200"
    backend = ElasticBackend("https://elastic:s3cret@es.example:9200")
    assert "s3cret" not in backend.url and backend.url == "https://elastic:***@es.example:9200"
