"""Orchestrator API hardening that needs no running server: the token is checked before a body is read,
a resumed run uses the server's current services and storage, a run request names no model path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.api.main import create_app
from orchestrator.api.run_configs import build_run_config
from orchestrator.api.settings import ApiSettings
from orchestrator.execution.driver import RunDriver
from orchestrator.execution.run_manager import RunManager
from orchestrator.execution.run_worker import WorkerInput, load_run_config
from orchestrator.execution.stored_config import RequestedRunConfig
from orchestrator.store import RunStore
from selfspec.errors import RequestFieldError
from selfspec.settings import RunConfig

TOKEN = "s3cret-token"
MALFORMED = b'{"run": {"name": '


async def _post(path: str, *, headers: dict[str, str]) -> httpx.Response:
    # No lifespan: nothing is opened, so only what runs before the routes' dependencies can answer.
    app = create_app(RunConfig(), settings=ApiSettings(token=SecretStr(TOKEN)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
        return await http.post(path, content=MALFORMED, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/evaluations", "/v1/adapters/a1/load", "/v1/runs/x/cancel"])
async def test_api_anonymous_malformed_body_is_401_not_422(path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await _post(path, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or wrong bearer token"}


async def test_api_malformed_body_with_the_token_is_still_422() -> None:
    response = await _post("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422, response.text


def _config(tmp_path: Path, *, services: dict[str, Any], adapters: str, target: int = 100) -> RunConfig:
    return RequestedRunConfig(storage={"data_dir": str(tmp_path / "data"), "adapters_dir": str(tmp_path / adapters)},
                              services=services, generation={"target_per_round": target})


async def test_resume_drives_a_run_with_the_servers_current_services_and_storage(tmp_path: Path) -> None:
    created_under = _config(tmp_path, services={"retriever_url": "http://old-retriever:1",
                                                "generator_urls": ["http://old-gen:1"]}, adapters="old", target=7)
    store = RunStore(created_under.database_url)
    store.create_run("r1", "demo", created_under.model_dump(mode="json"))
    store.set_status("r1", "failed", reason="the old retriever went away")
    server = _config(tmp_path, services={"retriever_url": "http://new-retriever:2",
                                         "generator_urls": ["http://new-gen:2"], "timeout_s": 9.0}, adapters="new")
    services = SimpleNamespace(store=store, generator=SimpleNamespace(urls=["http://new-gen:2"]), retriever=None,
                               trainer=object(), judge=None)
    manager = RunManager(services, server=server, loop_thread=None, isolate=False, counters=object())  # type: ignore[arg-type]
    started: list[RunDriver] = []
    manager._start = lambda run_id, driver: started.append(driver)  # type: ignore[method-assign]
    try:
        await manager._resume("r1")
        # a worker process is told the same: the server's sections replace the stored copy
        given = WorkerInput.model_validate_json(manager.worker_input().model_dump_json())
        in_worker = load_run_config("r1", given)
    finally:
        store.close()
    for config in (started[0].config, in_worker):
        assert config.services == server.services and config.storage == server.storage
        assert config.adapters_dir == tmp_path / "new"
        assert config.generation.target_per_round == 7  # the run's own sections are its own


def _refused(body: dict[str, Any], server: RunConfig) -> dict[tuple[str, ...], str]:
    with pytest.raises(RequestFieldError) as caught:
        build_run_config(body, server)
    return {tuple(e["loc"]): e["type"] for e in caught.value.errors}


def test_run_request_names_only_registered_or_allowlisted_models(tmp_path: Path) -> None:
    server = RequestedRunConfig()
    outside = str(tmp_path / "some-model")
    refused = _refused({"generation": {"model": outside}, "retrieval": {"dense_model": outside, "method": "dense"}},
                       server)
    assert refused == {("body", "generation", "model"): "not_allowed", ("body", "retrieval", "dense_model"): "not_allowed",
                       ("body", "retrieval", "method"): "not_allowed"}
    # what needs no allowlist: a registered model (name or dir name), the packaged dense model, the server's own
    for body in ({"generation": {"model": "gemma3-270m"}}, {"generation": {"model": "smollm2-135m-instruct"}},
                 {"retrieval": {"dense_model": "", "method": "bm25"}}):
        assert build_run_config(body, server)
    # the operator widens the choice in the server-owned services section
    widened = RequestedRunConfig(services={"allowed_models": [outside], "allowed_dense_models": [outside],
                                           "allowed_retrieval_methods": ["dense", "hybrid"]})
    config = build_run_config({"generation": {"model": outside}, "retrieval": {"dense_model": outside,
                                                                                "method": "hybrid"}}, widened)
    assert (config.generation.model, config.retrieval.dense_model, config.retrieval.method) == (outside, outside, "hybrid")
    # and a request cannot widen it itself: services is the server's
    assert _refused({"services": widened.services.model_dump(mode="json"), "generation": {"model": outside}},
                    server) == {("body", "services"): "server_owned", ("body", "generation", "model"): "not_allowed"}


def test_allowlists_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFSPEC_SERVICES__ALLOWED_MODELS", "/models/a,/models/b")
    monkeypatch.setenv("SELFSPEC_SERVICES__ALLOWED_RETRIEVAL_METHODS", '["dense"]')
    services = RunConfig().services
    assert services.allowed_models == ("/models/a", "/models/b") and services.allowed_retrieval_methods == ("dense",)
