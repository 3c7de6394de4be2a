"""Bearer token on every route but /healthz, body limit, config validation, adapter names and paths."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer

from orchestrator.api.main import create_app
from orchestrator.api.run_configs import public_config
from orchestrator.api.serve_command import check_bind, is_loopback
from orchestrator.api.settings import ApiSettings
from orchestrator.api.tickets import StreamTickets
from selfspec.settings import RunConfig
from tests.fakes.openai_server import FakeState
from tests.integration.test_api_support import api_config, fake_generator, read_events, running_api

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def fake_state() -> FakeState:
    return FakeState()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fake_state: FakeState) -> Iterator[tuple[httpx.Client, RunConfig]]:
    tmp = tmp_path_factory.mktemp("api-security")
    with fake_generator(fake_state) as gen_url:
        config = api_config(tmp, gen_url, target=3)
        # The module's runs need not finish before the next test starts one: no cap in the way.
        with running_api(config, token=TOKEN, max_body_bytes=LIMIT, max_active_runs=64) as client:
            yield client, config


@pytest.fixture
def client(env: tuple[httpx.Client, RunConfig]) -> httpx.Client:
    return env[0]


@pytest.fixture
def config(env: tuple[httpx.Client, RunConfig]) -> RunConfig:
    return env[1]


def _run_ids(client: httpx.Client) -> list[str]:
    """The runs there are (ids only: a run that just ended may still flip its `active` flag)."""
    return [run["id"] for run in client.get("/v1/runs").json()]


def _routes(config: RunConfig) -> list[tuple[str, str]]:
    schema = create_app(config, settings=ApiSettings()).openapi()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        routes += [(method.upper(), concrete) for method in operations]
    return routes


def test_every_route_but_healthz_needs_the_token(client: httpx.Client, config: RunConfig) -> None:
    routes = _routes(config)
    assert ("POST", "/v1/runs") in routes and ("POST", "/v1/adapters/x/load") in routes and len(routes) >= 16
    bare = httpx.Client(base_url=client.base_url, timeout=10)
    for method, path in routes:
        if path == "/healthz":
            assert bare.request(method, path).status_code == 200
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = bare.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
    # the token never goes in a URL (access logs): not even on the SSE route
    assert bare.get("/v1/runs", params={"token": TOKEN}).status_code == 401
    assert bare.get("/v1/runs/x/events", params={"token": TOKEN}).status_code == 401
    assert bare.get("/v1/runs/x/events", params={"ticket": TOKEN}).status_code == 401
    assert client.post("/v1/runs/x/events/ticket").status_code == 404  # no tickets for unknown runs
    bare.close()


def test_sse_opens_with_a_short_lived_ticket_of_that_run_only(client: httpx.Client) -> None:
    run_id = client.post("/v1/runs", json={}).json()["id"]
    other = client.post("/v1/runs", json={}).json()["id"]
    issued = client.post(f"/v1/runs/{run_id}/events/ticket")
    assert issued.status_code == 201 and 0 < issued.json()["expires_in"] <= 3600
    ticket = issued.json()["ticket"]
    assert TOKEN not in ticket and len(ticket) >= 32
    bare = httpx.Client(base_url=client.base_url, timeout=30)
    events = read_events(bare, run_id, params={"ticket": ticket})
    assert events[0].type == "run_created"
    assert bare.get(f"/v1/runs/{other}/events", params={"ticket": ticket}).status_code == 401
    bare.close()


def test_stream_tickets_expire() -> None:
    tickets = StreamTickets(ttl_s=0.05)
    ticket = tickets.issue("r1")
    assert tickets.admits(ticket, "r1") and not tickets.admits(ticket, "r2") and not tickets.admits(None, "r1")
    time.sleep(0.06)
    assert not tickets.admits(ticket, "r1")
    tickets.issue("r2")
    assert len(tickets._live) == 1  # expired ones are pruned as new ones are issued


def test_bad_config_gets_422_with_field_paths_and_writes_nothing(client: httpx.Client) -> None:
    before = _run_ids(client)
    cases = {
        "generation.target_per_round": {"generation": {"target_per_round": 0}},
        "generation.bogus": {"generation": {"bogus": 1}},
        "nosuchsection": {"nosuchsection": {}},
        "rounds.round2.instructions": {"rounds": {"round2": {"instructions": "sometimes"}}},
        "storage": {"storage": {"data_dir": "/tmp/elsewhere"}},
        "services": {"services": {"generator_urls": ["http://10.0.0.1:1"]}},
        "run.index": {"run": {"index": "other-index"}},
        "run.seeds": {"run": {"seeds": "/etc/passwd"}},
    }
    for field, body in cases.items():
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 422, (field, response.text)
        paths = [".".join(str(p) for p in e["loc"][1:]) for e in response.json()["detail"]]
        assert field in paths, (field, paths)
    for body in ([1, 2], "text"):
        assert client.post("/v1/runs", json=body).status_code == 422
    escaped = client.post("/v1/runs", json={"run": {"seeds": "../../../../etc/hosts"}})
    assert escaped.status_code == 422 and escaped.json()["detail"][0]["loc"] == ["body", "run", "seeds"]
    assert _run_ids(client) == before


def test_oversized_bodies_get_413(client: httpx.Client) -> None:
    big = {"run": {"name": "x"}, "pad": "a" * (LIMIT + 10)}
    assert client.post("/v1/runs", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        yield b'{"pad": "'
        for _ in range(LIMIT // 1024 + 4):
            yield b"a" * 1024
        yield b'"}'

    response = client.post("/v1/runs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.post("/v1/adapters/ok/load", json={"path": "a" * (LIMIT + 1)}).status_code == 413


@pytest.mark.parametrize("name", ["..", "a..b", "..%2F..%2Fetc", "%2e%2e", "x%2Fy", ".hidden", "-dash", "a b",
                                  "a" * 200])
def test_bad_adapter_names_are_refused_and_nothing_is_loaded(client: httpx.Client, config: RunConfig,
                                                             fake_state: FakeState, name: str) -> None:
    before = sorted(p.name for p in config.adapters_dir.iterdir())
    for action in ("load", "unload"):
        response = client.post(f"/v1/adapters/{name}/{action}")
        assert response.status_code in (400, 404, 422), (name, action, response.status_code)
    assert fake_state.adapters == {}
    assert sorted(p.name for p in config.adapters_dir.iterdir()) == before


def test_adapter_paths_must_lie_under_the_adapters_dir(client: httpx.Client, config: RunConfig,
                                                       fake_state: FakeState, tmp_path: Path) -> None:
    outside = tmp_path / "outside-adapter"
    outside.mkdir()
    for path in ("/etc", str(outside), "../outside", "../../", "sub/../../x"):
        response = client.post("/v1/adapters/good/load", json={"path": path})
        assert response.status_code == 400, (path, response.text)
        assert "outside the adapters dir" in response.json()["detail"]
    assert fake_state.adapters == {}
    assert client.post("/v1/adapters/good/load", json={"path": "missing"}).status_code == 404
    assert client.post("/v1/adapters/unknown/load").status_code == 404  # not in the store, no path given
    assert client.post("/v1/adapters/good/load", json={"path": "x", "extra": 1}).status_code == 422

    (config.adapters_dir / "good").mkdir()
    loaded = client.post("/v1/adapters/good/load", json={"path": "good"})
    assert loaded.status_code == 200 and loaded.json()["loaded"]
    assert fake_state.adapters == {"good": str((config.adapters_dir / "good").resolve())}
    assert client.post("/v1/adapters/good/load", json={"path": "good"}).status_code == 409
    assert [a["name"] for a in client.get("/v1/adapters").json() if a["loaded"]] == ["good"]
    assert client.post("/v1/adapters/good/unload").status_code == 200
    assert client.post("/v1/adapters/good/unload").status_code == 404
    assert fake_state.adapters == {}


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    response = client.options("/v1/runs", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in client.get("/v1/runs",
                                                           headers={"Origin": "https://evil.example"}).headers


def test_dashboard_and_docs_are_served_with_a_strict_csp(client: httpx.Client) -> None:
    base = str(client.base_url).rstrip("/")
    page = httpx.get(f"{base}/ui/", timeout=10)
    assert page.status_code == 200 and "selfspec dashboard" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{base}/ui/app.js", timeout=10).status_code == 200
    assert client.get("/docs").status_code == 200


def test_serving_beyond_loopback_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    check_bind("127.0.0.1", ApiSettings(token=None))
    check_bind("0.0.0.0", ApiSettings(token=TOKEN))
    with pytest.raises(typer.BadParameter, match="SELFSPEC_API_TOKEN"):
        check_bind("0.0.0.0", ApiSettings(token=None))
    with pytest.raises(typer.BadParameter):
        check_bind("0.0.0.0", ApiSettings(token=""))


def test_one_api_process_per_data_dir(config: RunConfig) -> None:
    from orchestrator.execution.data_dir_lock import DataDirLock
    from selfspec.errors import ConfigError

    with pytest.raises(ConfigError, match="another orchestrator API"):
        DataDirLock(config.data_dir).acquire()  # the module's server holds it


def test_request_metrics_use_route_templates(client: httpx.Client) -> None:
    client.get("/v1/runs/nope")
    metrics = client.get("/metrics").text
    assert 'selfspec_api_requests_total{method="GET",route="/v1/runs/{run_id}",status="404"}' in metrics


def test_request_metrics_map_invented_methods_to_other(client: httpx.Client) -> None:
    """Before: every invented method became a label value of its own (unbounded /metrics)."""
    for i in range(3):
        client.request(f"BREW{i}", "/v1/runs")
    metrics = client.get("/metrics").text
    assert "BREW" not in metrics
    assert 'method="other"' in metrics


def test_serve_command_refuses_a_public_host_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from orchestrator.api.serve_command import serve_orchestrator_command

    app = typer.Typer()
    app.command()(serve_orchestrator_command)
    monkeypatch.delenv("SELFSPEC_API_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2 and "SELFSPEC_API_TOKEN" in result.output


def test_run_ids_are_full_uuids_and_idempotency_key_replays(client: httpx.Client) -> None:
    before = {run["id"] for run in client.get("/v1/runs").json()}
    body = {"run": {"name": "idem"}}
    first = client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    run_id = first.json()["id"]
    assert re.fullmatch(r"idem-[0-9a-f]{32}", run_id), run_id  # before: name-stamp-4 hex digits
    retry = client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert retry.status_code == 201 and retry.json()["id"] == run_id
    assert retry.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/runs", json={"run": {"name": "other"}}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and "Idempotency-Key" in other.text
    fresh = client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-2"})
    assert fresh.status_code == 201 and fresh.json()["id"] != run_id
    after = {run["id"] for run in client.get("/v1/runs").json()}
    assert after - before == {run_id, fresh.json()["id"]}


def test_run_config_numbers_have_upper_bounds(client: httpx.Client) -> None:
    """Before: only lower bounds, so a request could ask for a billion samples, epochs or tokens."""
    before = _run_ids(client)
    cases = {
        "generation.target_per_round": {"generation": {"target_per_round": 10**9}},
        "generation.response_workers": {"generation": {"response_workers": 10**6}},
        "generation.instruction_workers": {"generation": {"instruction_workers": 10**6}},
        "generation.response_max_tokens": {"generation": {"response_max_tokens": 10**7}},
        "generation.instruction_max_tokens": {"generation": {"instruction_max_tokens": 10**7}},
        "generation.passage_max_words": {"generation": {"passage_max_words": 10**6}},
        "training.epochs": {"training": {"epochs": 1e6}},
        "training.max_length": {"training": {"max_length": 10**7}},
        "training.max_steps": {"training": {"max_steps": -5}},
        "rounds.round2.target": {"rounds": {"round2": {"target": 10**9}}},
        "eval.shots.0": {"eval": {"shots": [10**4]}},
    }
    for field, body in cases.items():
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 422, (field, response.text)
        paths = [".".join(str(p) for p in e["loc"][1:]) for e in response.json()["detail"]]
        assert field in paths, (field, paths)
    for body in ({"shots": [10**4]}, {"max_items": 10**12}, {"seed": 2**70}):
        response = client.post("/v1/evaluations", json={"models": ["fake-base"], "tasks": ["biomedical"], **body})
        assert response.status_code == 422, (body, response.text)
    assert _run_ids(client) == before


def test_active_runs_are_capped(tmp_path: Path) -> None:
    """Before: any number of runs ran at once. Beyond max_active_runs, creating or resuming one is a 429."""
    with fake_generator(FakeState(latency_s=0.3)) as gen_url:
        config = api_config(tmp_path, gen_url, target=200)
        with running_api(config, token=TOKEN, max_active_runs=1, run_workers="inline") as client:
            first = client.post("/v1/runs", json={}).json()["id"]
            refused = client.post("/v1/runs", json={"run": {"name": "second"}})
            assert refused.status_code == 429, refused.text
            assert "SELFSPEC_API_MAX_ACTIVE_RUNS" in refused.json()["detail"] and refused.headers["retry-after"]
            assert _run_ids(client) == [first]  # nothing written
            assert client.post(f"/v1/runs/{first}/cancel").status_code == 200
            second = client.post("/v1/runs", json={"run": {"name": "second"}})
            assert second.status_code == 201, second.text
            assert client.post(f"/v1/runs/{first}/resume").status_code == 429  # the slot is taken again
            assert client.post(f"/v1/runs/{second.json()['id']}/cancel").status_code == 200
            assert client.post(f"/v1/runs/{first}/resume").status_code == 200
            assert client.post(f"/v1/runs/{first}/cancel").status_code == 200


def test_host_allowlist_refuses_rebound_names(client: httpx.Client) -> None:
    """Before: any Host was served, so a DNS-rebound name (evil.example -> 127.0.0.1) reached the API."""
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        response = client.get("/v1/runs", headers={"Host": host})
        assert response.status_code == 400, host
        assert client.post("/v1/runs", json={}, headers={"Host": host}).status_code == 400
    port = client.base_url.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert client.get("/v1/runs", headers={"Host": host}).status_code == 200, host
    assert ApiSettings(allowed_hosts="api.example.org, *.lab.example").allowed_hosts == (
        "api.example.org", "*.lab.example")


def test_no_state_change_from_another_site(client: httpx.Client) -> None:
    """Before: a page on another site could POST (a form, or a bodyless fetch) and create or cancel runs."""
    before = _run_ids(client)
    evil = {"Origin": "https://evil.example"}
    assert client.post("/v1/runs", json={}, headers=evil).status_code == 403
    assert client.post("/v1/runs/x/cancel", headers={"Origin": "null"}).status_code == 403
    assert client.post("/v1/adapters/ok/load", headers=evil).status_code == 403
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"):
        response = client.post("/v1/runs", content=b"{}", headers={"Content-Type": content_type})
        assert response.status_code == 415, content_type
    assert _run_ids(client) == before
    same_site = {"Origin": str(client.base_url).rstrip("/")}  # the dashboard's own origin
    created = client.post("/v1/runs", json={"run": {"name": "same-origin"}}, headers=same_site)
    assert created.status_code == 201, created.text
    assert client.get("/v1/runs", headers=evil).status_code == 200  # reads stay guarded by the token alone


def test_run_detail_leaves_out_the_server_owned_sections(client: httpx.Client) -> None:
    """Before: GET /v1/runs/{id} returned the storage and services sections (the database URL, replica URLs)."""
    run_id = client.post("/v1/runs", json={"run": {"name": "detail"}}).json()["id"]
    config = client.get(f"/v1/runs/{run_id}").json()["config"]
    assert "storage" not in config and "services" not in config
    assert config["generation"]["target_per_round"] == 3 and config["run"]["name"] == "detail"
    shown = public_config({"gates": {"judge_url": "https://u:pw-secret@judge/v1"},
                           "storage": {"database_url": "postgresql://u:pw-secret@db/selfspec"}})
    assert shown == {"gates": {"judge_url": "https://u:***@judge/v1"}}


def test_run_and_evaluation_lists_are_paginated(client: httpx.Client) -> None:
    """Before: GET /v1/runs and /v1/evaluations returned every row there is, in one response."""
    for name in ("page-a", "page-b"):
        assert client.post("/v1/runs", json={"run": {"name": name}}).status_code == 201
    everything = [run["id"] for run in client.get("/v1/runs").json()]
    first = client.get("/v1/runs", params={"limit": 1})
    assert [run["id"] for run in first.json()] == everything[:1]
    assert first.headers["link"] == '</v1/runs?limit=1&offset=1>; rel="next"'
    second = client.get(first.headers["link"].split(">")[0].lstrip("<"))
    assert [run["id"] for run in second.json()] == everything[1:2]
    last = client.get("/v1/runs", params={"limit": 1, "offset": len(everything) - 1})
    assert [run["id"] for run in last.json()] == everything[-1:] and "link" not in last.headers
    for path in ("/v1/runs", "/v1/evaluations"):
        for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
            assert client.get(path, params=params).status_code == 422, (path, params)
    assert client.get("/v1/evaluations", params={"limit": 500}).status_code == 200


def test_event_streams_are_capped_per_client(tmp_path: Path) -> None:
    """Before: a client could hold any number of event streams at once."""
    with fake_generator(FakeState(latency_s=0.3)) as gen_url:
        config = api_config(tmp_path, gen_url, target=200)
        # A lifetime far beyond the test, so the first stream is surely still open when the second asks.
        with running_api(config, token=TOKEN, run_workers="inline", sse_max_streams_per_client=1,
                         sse_max_lifetime_s=600.0) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            with client.stream("GET", f"/v1/runs/{run_id}/events") as first:
                assert first.status_code == 200
                second = client.get(f"/v1/runs/{run_id}/events")
                assert second.status_code == 429 and "SSE_MAX_STREAMS_PER_CLIENT" in second.text
            # The slot is given back once the server sees the first stream closed, which happens after
            # the client closed it: ask again until it is free (bounded, not timed).
            deadline = time.monotonic() + 30
            while True:
                with client.stream("GET", f"/v1/runs/{run_id}/events") as again:
                    if again.status_code == 200:
                        break
                    assert again.status_code == 429 and time.monotonic() < deadline, "the slot was never freed"
                time.sleep(0.05)
            assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 200


def test_event_streams_end_at_their_lifetime_while_the_run_goes_on(tmp_path: Path) -> None:
    """Before: a stream stayed open for as long as its run lasted."""
    with fake_generator(FakeState(latency_s=0.3)) as gen_url:
        config = api_config(tmp_path, gen_url, target=200)
        with running_api(config, token=TOKEN, run_workers="inline", sse_max_lifetime_s=1.0) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            with client.stream("GET", f"/v1/runs/{run_id}/events") as first:
                assert first.status_code == 200
                lines = list(first.iter_lines())  # returns only because the stream was closed
            assert "event: run_created" in lines and "event: end" not in lines
            assert client.get(f"/v1/runs/{run_id}").json()["status"] in ("queued", "running")
            assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 200
