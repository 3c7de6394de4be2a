"""Replica-aware generator client against fake servers: balancing, bounded retries, named failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.errors import (
    AdapterConflict,
    AdapterInvalid,
    AdapterNotFound,
    BackendResponseError,
    BackendUnavailable,
)
from selfspec.types import SamplingParams
from tests.fakes.openai_server import FakeState, create_fake_app

PARAMS = SamplingParams(max_tokens=4)


class Router(httpx.AsyncBaseTransport):
    """Routes each replica host to its own fake app; 'refused' hosts raise ConnectError."""

    def __init__(self, apps: dict[str, FakeState], refused: set[str] | None = None) -> None:
        self.transports = {host: httpx.ASGITransport(app=create_fake_app(state)) for host, state in apps.items()}
        self.refused = refused or set()
        self.hits: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hits[host] = self.hits.get(host, 0) + 1
        if host in self.refused:
            raise httpx.ConnectError("connection refused", request=request)
        # ASGITransport ignores timeouts (no socket); enforce the read timeout like a real one would.
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            return await asyncio.wait_for(self.transports[host].handle_async_request(request), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None


def _client(router: Router, hosts: list[str], **kw: object) -> OpenAICompatGenerator:
    return OpenAICompatGenerator([f"http://{h}" for h in hosts], transport=router, backoff_s=0.001, **kw)  # type: ignore[arg-type]


async def test_load_is_balanced_across_healthy_replicas() -> None:
    states = {"a": FakeState(latency_s=0.02), "b": FakeState(latency_s=0.02)}
    router = Router(states)
    async with _client(router, ["a", "b"], in_flight=8) as client:
        await asyncio.gather(*[client.complete("x", model="fake-base", params=PARAMS) for _ in range(40)])
    assert router.hits["a"] >= 12 and router.hits["b"] >= 12


async def test_refused_replica_is_skipped_and_healthy_one_takes_the_load() -> None:
    router = Router({"good": FakeState(), "dead": FakeState()}, refused={"dead"})
    async with _client(router, ["dead", "good"], retries=3) as client:
        results = await asyncio.gather(*[client.complete("x", model="fake-base", params=PARAMS) for _ in range(20)])
    assert len(results) == 20
    assert router.hits["good"] == 20 and router.hits["dead"] <= 3  # cooled down after failing


async def test_retries_are_bounded_and_error_names_the_replica() -> None:
    router = Router({"only": FakeState(down=True)})
    async with _client(router, ["only"], retries=2) as client:
        with pytest.raises(BackendResponseError) as info:
            await client.complete("x", model="fake-base", params=PARAMS)
    assert router.hits["only"] == 3 and client.retry_count == 2
    assert "http://only" in str(info.value) and info.value.status == 503


async def test_connection_refused_everywhere_is_unavailable() -> None:
    router = Router({"a": FakeState()}, refused={"a"})
    async with _client(router, ["a"], retries=1) as client:
        with pytest.raises(BackendUnavailable, match="http://a"):
            await client.complete("x", model="fake-base", params=PARAMS)


async def test_429_and_5xx_are_retried_but_404_is_not() -> None:
    state = FakeState(error_rate=0.5)
    router = Router({"a": state})
    async with _client(router, ["a"], retries=8) as client:
        await asyncio.gather(*[client.complete("x", model="fake-base", params=PARAMS) for _ in range(10)])
        assert client.retry_count == state.errors_sent > 0
        before = router.hits["a"]
        state.error_rate = 0.0
        with pytest.raises(BackendResponseError) as info:
            await client.complete("x", model="unknown", params=PARAMS)
        assert info.value.status == 404 and router.hits["a"] == before + 1


async def test_timeouts_are_retried() -> None:
    state = FakeState(stall_rate=1.0, stall_s=1.0)
    router = Router({"a": state})
    async with _client(router, ["a"], retries=1, timeout_s=0.05) as client:
        with pytest.raises(Exception, match="timed out"):
            await client.complete("x", model="fake-base", params=PARAMS)
    assert router.hits["a"] == 2


async def test_adapter_load_goes_to_every_replica_and_names_the_failing_one() -> None:
    states = {"a": FakeState(), "b": FakeState()}
    router = Router(states)
    async with _client(router, ["a", "b"]) as client:
        await client.load_adapter("r1", "/adapters/r1")
        assert states["a"].adapters == states["b"].adapters == {"r1": "/adapters/r1"}
        assert await client.list() == ["r1"]
        del states["b"].adapters["r1"]
        with pytest.raises(AdapterConflict, match="replica http://a"):
            await client.load_adapter("r1", "/adapters/r1")
        with pytest.raises(AdapterNotFound, match="replica http://b"):
            await client.unload_adapter("r1")
        with pytest.raises(AdapterInvalid):
            await client.load_adapter("../x", "/adapters/x")


async def test_replica_credentials_never_reach_errors_or_metrics() -> None:
    """Before: a replica URL's password was in every error (stored as a run's failure reason, shown by
    the API) and in the /metrics labels of outstanding calls."""
    router = Router({"good": FakeState(), "dead": FakeState()}, refused={"dead"})
    urls = ["http://user:pw-secret@dead", "http://user:pw-secret@good"]
    async with OpenAICompatGenerator(urls, transport=router, backoff_s=0.001, retries=0) as client:
        assert set(client.outstanding()) == {"http://user:***@dead", "http://user:***@good"}
        with pytest.raises(BackendUnavailable) as down:  # the first replica is down
            await client.unload_adapter("never-loaded")
        assert "pw-secret" not in str(down.value) and "pw-secret" not in down.value.backend
    async with OpenAICompatGenerator(urls[1:], transport=router, retries=0) as client:
        with pytest.raises(AdapterNotFound) as missing:
            await client.unload_adapter("never-loaded")
        assert "pw-secret" not in str(missing.value) and "user:***@good" in str(missing.value)
    assert "pw-secret" not in str(BackendResponseError(500, "boom", backend="https://u:pw-secret@h:9200"))
