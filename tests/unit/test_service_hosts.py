"""The Host allowlist (DNS rebinding guard) of the non-API services: the embedded generator, the retriever
and the trainer answer loopback names by default and what SELFSPEC_SERVICE_ALLOWED_HOSTS adds, others 400.
One middleware (selfspec.hosts) serves them and the orchestrator API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from services.generator.app import create_app as create_generator_app
from services.retriever.app.backends import build_backend
from services.retriever.app.config import RetrieverSettings
from services.retriever.app.main import create_app as create_retriever_app
from trainer.service import create_app as create_trainer_app

LOOPBACK = ("localhost", "127.0.0.1", "localhost:8002", "127.0.0.1:8300", "[::1]:8000")
REBOUND = ("attacker.example", "attacker.example:8000", "retriever.attacker.example", "10.0.0.5")


@asynccontextmanager
async def _generator(tmp_path: Path, **kwargs: Any) -> AsyncIterator[Any]:
    engine = SimpleNamespace(served_name="tiny", created=0, model_path="/m", adapters={}, close=lambda: None)
    yield create_generator_app(engine, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def _retriever(tmp_path: Path, **kwargs: Any) -> AsyncIterator[Any]:
    settings = RetrieverSettings(data_dir=tmp_path)
    app = create_retriever_app(settings, **kwargs)
    app.state.backend = build_backend(settings)  # the lifespan's job; ASGITransport runs none
    try:
        yield app
    finally:
        await app.state.backend.aclose()


@asynccontextmanager
async def _trainer(tmp_path: Path, **kwargs: Any) -> AsyncIterator[Any]:
    yield create_trainer_app(data_dir=tmp_path, adapters_dir=tmp_path / "adapters", runner=object(),  # type: ignore[arg-type]
                             **kwargs)


SERVICES: dict[str, Callable[..., Any]] = {"generator": _generator, "retriever": _retriever, "trainer": _trainer}


async def _health(app: Any, host: str) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        return (await http.get("/health", headers={"Host": host})).status_code


@pytest.mark.parametrize("service", SERVICES)
async def test_service_answers_loopback_names_only_by_default(service: str, tmp_path: Path) -> None:
    async with SERVICES[service](tmp_path) as app:
        for host in LOOPBACK:
            assert await _health(app, host) == 200, host
        for host in REBOUND:
            assert await _health(app, host) == 400, host


@pytest.mark.parametrize("service", SERVICES)
async def test_service_allowed_hosts_from_env_or_argument(service: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFSPEC_SERVICE_ALLOWED_HOSTS", f"{service},127.0.0.1")  # as compose sets it
    async with SERVICES[service](tmp_path) as app:
        assert await _health(app, f"{service}:8000") == 200
        assert await _health(app, "127.0.0.1") == 200
        assert await _health(app, "localhost") == 400
    async with SERVICES[service](tmp_path, allowed_hosts=["*.internal"]) as app:
        assert await _health(app, f"{service}.internal") == 200
        assert await _health(app, "127.0.0.1") == 400
