"""Every service is authenticated: bearer tokens on the generator (vLLM's --api-key), retriever and trainer,
loopback-only without one, and our clients send them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from orchestrator.execution.services import LocalAdapterTrainer, connect_retriever, generator_client
from selfspec.auth import SECRET_ENV, ServiceTokens, bind_refusal, token_matches
from selfspec.clients.retriever_http import HttpRetriever
from selfspec.processes import child_env
from selfspec.settings import RunConfig
from services.generator.app import create_app as create_generator_app
from services.generator.vllm import vllm_env
from services.retriever.app.backends import build_backend
from services.retriever.app.config import RetrieverSettings
from services.retriever.app.main import create_app as create_retriever_app
from trainer.service import create_app as create_trainer_app

KEY = "k3y-for-tests"


def _fake_engine() -> Any:
    """What the generator app reads for /v1/models; no model is loaded."""
    return SimpleNamespace(served_name="tiny", created=0, model_path="/models/tiny", adapters={},
                           close=lambda: None)


async def _call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        return await http.request(method, path, **kwargs)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_generator_api_key_guards_v1_like_vllm() -> None:
    app = create_generator_app(_fake_engine(), api_keys=[KEY, "second"])
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/load_lora_adapter"),
                         ("POST", "/v1/unload_lora_adapter"), ("POST", "/v1/completions")):
        for headers in ({}, _auth("wrong"), {"Authorization": f"Basic {KEY}"}):
            response = await _call(app, method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"error": "Unauthorized"}  # vLLM's body
    assert (await _call(app, "GET", "/v1/models", headers=_auth(KEY))).json()["data"][0]["id"] == "tiny"
    assert (await _call(app, "GET", "/v1/models", headers=_auth("second"))).status_code == 200
    assert (await _call(app, "GET", "/health")).status_code == 200  # open, as in vLLM
    assert (await _call(app, "OPTIONS", "/v1/models")).status_code != 401  # preflights carry no credentials


async def test_generator_without_key_stays_open() -> None:
    assert (await _call(create_generator_app(_fake_engine()), "GET", "/v1/models")).status_code == 200


async def test_retriever_service_token_guards_all_but_health(tmp_path: Path) -> None:
    settings = RetrieverSettings(data_dir=tmp_path)
    app = create_retriever_app(settings, token=KEY)
    app.state.backend = build_backend(settings)  # the lifespan's job; ASGITransport runs none
    try:
        for method, path in (("PUT", "/indexes/bio"), ("GET", "/indexes/bio"),
                             ("POST", "/indexes/bio/documents"), ("POST", "/indexes/bio/search")):
            response = await _call(app, method, path, headers=_auth("wrong"), json={"query": "x", "k": 1})
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
        assert (await _call(app, "GET", "/health")).status_code == 200
        retriever = HttpRetriever("http://localhost", "bio", transport=httpx.ASGITransport(app=app), api_key=KEY)
        async with retriever:
            assert await retriever.ensure_index()
            assert await retriever.count() == 0
    finally:
        await app.state.backend.aclose()


async def test_trainer_service_token_guards_jobs(tmp_path: Path) -> None:
    app = create_trainer_app(data_dir=tmp_path, adapters_dir=tmp_path / "adapters", runner=object(),  # type: ignore[arg-type]
                             token=KEY)
    assert (await _call(app, "POST", "/jobs", json={})).status_code == 401
    assert (await _call(app, "GET", "/jobs/" + "0" * 32, headers=_auth("wrong"))).status_code == 401
    assert (await _call(app, "GET", "/health")).status_code == 200
    # with the token the request reaches the route (and fails validation there, not auth)
    assert (await _call(app, "POST", "/jobs", json={}, headers=_auth(KEY))).status_code == 422


def _serve_cli() -> typer.Typer:
    from selfspec.cli import serve_app

    return serve_app


@pytest.mark.parametrize("service", ["generator", "retriever", "trainer"])
def test_serve_refuses_a_public_bind_without_a_token(service: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(_serve_cli(), [service, "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve on '0.0.0.0' without a token" in result.output


def test_bind_rule() -> None:
    assert bind_refusal("127.0.0.1", has_token=False, token_env="T") is None
    assert bind_refusal("::1", has_token=False, token_env="T") is None
    assert bind_refusal("localhost", has_token=False, token_env="T") is None
    assert bind_refusal("0.0.0.0", has_token=True, token_env="T") is None
    assert "set T" in (bind_refusal("0.0.0.0", has_token=False, token_env="T") or "")
    assert token_matches("a", ["b", "a"]) and not token_matches(None, ["a"]) and not token_matches("", ["a"])


def _recording(seen: list[httpx.Request], reply: Any) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=reply)
    return httpx.MockTransport(handler)


async def test_orchestrator_clients_send_the_service_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFSPEC_SERVICE_TOKEN", "svc")
    config = RunConfig(services={"retriever_url": "http://retriever", "trainer_url": "http://trainer"},
                       retrieval={"backend": "http"})
    async with AsyncExitStack() as stack:
        retriever = await connect_retriever(config, stack)
        assert isinstance(retriever, HttpRetriever)
        assert retriever._endpoints[0].client.headers["authorization"] == "Bearer svc"
    trainer = LocalAdapterTrainer(config)
    assert trainer.runner._endpoints[0].client.headers["authorization"] == "Bearer svc"  # type: ignore[attr-defined]
    await trainer.runner.aclose()  # type: ignore[attr-defined]
    generator = generator_client(config, ["http://gen"])
    assert generator._endpoints[0].client.headers["authorization"] == "Bearer svc"
    await generator.aclose()
    monkeypatch.setenv("SELFSPEC_GENERATOR_API_KEY", "gen")  # a generator with a key of its own
    assert ServiceTokens().generator == "gen" and ServiceTokens().service == "svc"
    generator = generator_client(config, ["http://gen"])
    assert generator._endpoints[0].client.headers["authorization"] == "Bearer gen"
    await generator.aclose()


async def test_retriever_client_sends_its_key() -> None:
    seen: list[httpx.Request] = []
    async with HttpRetriever("http://r", "bio", transport=_recording(seen, {"count": 3}), api_key="t") as client:
        assert await client.count() == 3
    assert seen[0].headers["authorization"] == "Bearer t"


def test_children_do_not_inherit_tokens_they_do_not_need(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.setenv(name, "secret")
    assert not set(SECRET_ENV) & set(child_env())  # the embedded generator we start: loopback, no key
    worker = child_env(drop=("SELFSPEC_API_TOKEN",))
    assert "SELFSPEC_API_TOKEN" not in worker and worker["SELFSPEC_SERVICE_TOKEN"] == "secret"
    from trainer.jobs import _child_env

    assert not set(SECRET_ENV) & set(_child_env())


def test_vllm_gets_the_key_by_env_not_argv() -> None:
    assert vllm_env(api_keys=[KEY])["VLLM_API_KEY"] == KEY
    with pytest.raises(ValueError):
        vllm_env(api_keys=["a", "b"])
