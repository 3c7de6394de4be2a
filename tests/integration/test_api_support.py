"""Helpers shared by the orchestrator API tests (no tests here): servers on free loopback ports, configs, SSE.

Imported as `tests.integration.test_api_support`; the name keeps it inside the API tests' file set.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from orchestrator.api.main import ServicesFactory, create_app
from orchestrator.api.settings import ApiSettings
from orchestrator.store import RunStore, instructions, samples
from selfspec.processes import ManagedServer
from selfspec.settings import RunConfig, load_config
from tests.fakes.openai_server import FakeState, create_fake_app

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "cancelled"}


@contextmanager
def serve_in_thread(app: FastAPI, *, timeout_s: float = 60.0) -> Iterator[str]:
    """uvicorn in a thread on a socket bound first (the port cannot be taken); yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def fake_generator(state: FakeState | None = None) -> Iterator[str]:
    with serve_in_thread(create_fake_app(state or FakeState())) as url:
        yield url


def config_data(tmp_path: Path, generator_url: str, *, target: int = 12) -> dict[str, Any]:
    """A small one-round run on the fake generator and the embedded BM25 over the shipped corpus."""
    return {
        "run": {"name": "apitest", "seeds": str(REPO / "seeds/biomedical.jsonl"),
                "corpus": str(REPO / "corpora/biomedical.jsonl"), "index": "api-test"},
        "generation": {"model": "fake-base", "target_per_round": target, "instruction_workers": 2,
                       "response_workers": 4},
        "rounds": {"count": 1},
        "training": {"enabled": False},
        "services": {"generator_urls": [generator_url], "backoff_s": 0.01, "retries": 2},
        "storage": {"data_dir": str(tmp_path / "data"), "adapters_dir": str(tmp_path / "data" / "adapters")},
    }


def api_config(tmp_path: Path, generator_url: str, *, target: int = 12) -> RunConfig:
    data = config_data(tmp_path, generator_url, target=target)
    overrides = {f"{section}.{key}": value for section, fields in data.items() for key, value in fields.items()}
    return load_config(None, overrides)


def config_toml(data: dict[str, Any]) -> str:
    lines = []
    for section, fields in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@contextmanager
def running_api(config: RunConfig, *, token: str | None = None,
                services_factory: ServicesFactory | None = None, **settings: Any) -> Iterator[httpx.Client]:
    api_settings = ApiSettings(token=token, sse_poll_s=0.05, **settings)
    app = create_app(config, services_factory=services_factory, settings=api_settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        yield client


def wait_for_status(client: httpx.Client, run_id: str, statuses: set[str], *, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if run["status"] in statuses and not (run["active"] and run["status"] in TERMINAL):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} stayed {run['status']} ({run['phase']})")
        time.sleep(0.05)


def wait_for(predicate: Any, *, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Event:
    id: int | None
    type: str
    data: dict[str, Any]


def read_events(client: httpx.Client, run_id: str, *, last_event_id: int | None = None, limit: int | None = None,
                params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> list[Event]:
    """Read an SSE stream until its `end` event (or `limit` events with ids), parsing the wire format."""
    request_headers = dict(headers or {})
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = str(last_event_id)
    events: list[Event] = []
    fields: dict[str, str] = {}
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=request_headers, params=params,
                       timeout=httpx.Timeout(60, read=60)) as response:
        response.raise_for_status()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                continue  # keep-alive comment
            if line:
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
                continue
            if not fields:
                continue
            event = Event(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                          json.loads(fields.get("data", "null")))
            fields = {}
            if event.type == "end":
                break
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
    return events


def api_server(config: Path, port: int, log_path: Path) -> ManagedServer:
    """`python -m orchestrator.api` as a real child process (kill -9 tests, benchmarks); ready on /healthz."""
    return ManagedServer([sys.executable, "-m", "orchestrator.api", "--port", str(port), "--config", str(config)],
                         url=f"http://127.0.0.1:{port}", log_path=log_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                         startup_timeout_s=60, health_path="/healthz", cwd=REPO)


def assert_answered_once(store: RunStore, run_id: str, target: int) -> None:
    """Exactly `target` ok samples, one per kept instruction of the run: nothing lost, nothing twice."""
    with store.engine.connect() as conn:
        kept = conn.execute(select(instructions.c.id).where(
            instructions.c.run_id == run_id, instructions.c.verdict == "kept")).scalars().all()
        answered = conn.execute(select(samples.c.instruction_id, samples.c.status)
                                .where(samples.c.run_id == run_id)).all()
    assert len(answered) == target and all(status == "ok" for _, status in answered)
    assert sorted(kept) == sorted(i for i, _ in answered)
