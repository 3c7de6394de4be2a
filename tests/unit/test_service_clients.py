"""Every service client turns the same upstream answer into the same exception (one mapping, one retry policy)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from selfspec.clients.openai_compat import OpenAICompatGenerator
from selfspec.clients.retriever_http import HttpRetriever
from selfspec.errors import RETRYABLE, BackendError
from selfspec.types import SamplingParams
from trainer.client import HttpTrainerClient
from trainer.config import TrainConfig

Call = Callable[[httpx.AsyncBaseTransport], Awaitable[object]]


async def _generator(transport: httpx.AsyncBaseTransport) -> object:
    async with OpenAICompatGenerator(["http://gen"], transport=transport, retries=1, backoff_s=0.0) as client:
        return await client.complete("x", model="m", params=SamplingParams(max_tokens=1))


async def _retriever(transport: httpx.AsyncBaseTransport) -> object:
    async with HttpRetriever("http://ret", "bio", transport=transport, retries=1, backoff_s=0.0) as client:
        return await client.count()


async def _trainer(transport: httpx.AsyncBaseTransport) -> object:
    config = TrainConfig(base_model="m", dataset=Path("d.jsonl"), output_dir=Path("adapters/r1"))
    async with HttpTrainerClient("http://trainer", transport=transport, retries=1, backoff_s=0.0) as client:
        return await client.submit(config)


CLIENTS: dict[str, Call] = {"generator": _generator, "retriever": _retriever, "trainer": _trainer}


async def _outcome(call: Call, answer: Callable[[httpx.Request], httpx.Response]) -> tuple[type[BaseException], int]:
    """The exception type a client raises when every attempt gets `answer`, and how many attempts it made."""
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return answer(request)

    with pytest.raises(BackendError) as caught:
        await call(httpx.MockTransport(handler))
    return type(caught.value), attempts


@pytest.mark.parametrize("status", [400, 404, 409, 422, 429, 500, 502, 503, 504])
async def test_service_clients_map_a_status_to_the_same_error(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "no"})

    outcomes = {name: await _outcome(call, answer) for name, call in CLIENTS.items()}
    assert len(set(outcomes.values())) == 1, outcomes
    error, attempts = outcomes["generator"]
    assert attempts == (2 if issubclass(error, RETRYABLE) else 1)
    assert issubclass(error, RETRYABLE) == (status == 429 or status >= 500)


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_service_clients_map_a_transport_failure_to_the_same_error(failure: httpx.HTTPError) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise failure

    outcomes = {name: await _outcome(call, answer) for name, call in CLIENTS.items()}
    assert len(set(outcomes.values())) == 1, outcomes
    error, attempts = outcomes["generator"]
    assert issubclass(error, RETRYABLE) and attempts == 2
