"""SSE resumability (Last-Event-ID) and cancel/resume of a live run, through the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.store import RunStore, events
from tests.fakes.openai_server import FakeState
from tests.integration.test_api_support import (
    api_config,
    assert_answered_once,
    fake_generator,
    read_events,
    running_api,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.integration


def _event_ids(store: RunStore, run_id: str) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(events.c.id).where(events.c.run_id == run_id).order_by(events.c.id)).scalars())


def test_sse_reconnect_with_last_event_id_sees_every_event_once(tmp_path: Path) -> None:
    with fake_generator(FakeState(latency_s=0.02)) as gen_url:
        config = api_config(tmp_path, gen_url, target=30)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            seen: list[int] = []
            last: int | None = None
            connections = 0
            while True:  # drop the connection every 7 events, reconnect where we left off
                batch = read_events(client, run_id, last_event_id=last, limit=7)
                connections += 1
                seen += [e.id for e in batch if e.id is not None]
                if len(batch) < 7:
                    break  # the stream ended: the run is over and every event was sent
                last = seen[-1]
            wait_for_status(client, run_id, {"completed"})
            # a late reader starting from an id gets exactly the rest; `after` works like Last-Event-ID
            tail = read_events(client, run_id, params={"after": str(seen[10])})
    store = RunStore(config.database_url)
    expected = _event_ids(store, run_id)
    store.close()
    assert connections > 3
    assert seen == expected  # every event, once, in order
    assert [e.id for e in tail] == expected[11:]


def test_cancel_then_resume_finishes_with_exact_counts(tmp_path: Path) -> None:
    target = 60  # with 0.1 s a call the run is still going when the test acts on it
    with fake_generator(FakeState(latency_s=0.1)) as gen_url:
        config = api_config(tmp_path, gen_url, target=target)
        store = RunStore(config.database_url)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            wait_for(lambda: store.sample_counts(run_id, 1).get("ok", 0) >= 10, what="10 samples")
            cancelled = client.post(f"/v1/runs/{run_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled" and not cancelled.json()["active"]
            frozen = store.sample_counts(run_id, 1)["ok"]
            assert 10 <= frozen < target
            run = client.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "cancelled" and run["reason"] == "cancelled by API request"
            assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 409  # already cancelled
            assert store.sample_counts(run_id, 1)["ok"] == frozen  # nothing moves while cancelled

            resumed = client.post(f"/v1/runs/{run_id}/resume")
            assert resumed.status_code == 200 and resumed.json()["active"]
            assert resumed.json()["status"] == "running"  # not the `cancelled` it was resumed from
            assert client.post(f"/v1/runs/{run_id}/resume").status_code == 409  # already running
            run = wait_for_status(client, run_id, {"completed"})
            assert run["rounds"]["1"]["samples_ok"] == target
            assert client.post(f"/v1/runs/{run_id}/resume").status_code == 409  # completed
        assert_answered_once(store, run_id, target)
        store.close()


def test_graceful_stop_leaves_the_run_paused_and_the_next_start_finishes_it(tmp_path: Path) -> None:
    target = 60
    with fake_generator(FakeState(latency_s=0.1)) as gen_url:
        config = api_config(tmp_path, gen_url, target=target)
        store = RunStore(config.database_url)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            wait_for(lambda: store.sample_counts(run_id, 1).get("ok", 0) >= 5, what="5 samples")
            metrics = client.get("/metrics").text
            assert f'selfspec_run_items_total{{round="1",run_id="{run_id}",stage="samples_ok"}}' in metrics
            assert "selfspec_runs_active 1.0" in metrics and "selfspec_run_queue_depth{" in metrics
        run = store.get_run(run_id)
        assert run.status == "paused" and "resumes" in run.reason
        stopped_at = store.sample_counts(run_id, 1)["ok"]
        assert stopped_at < target
        with running_api(config) as client:
            run = wait_for_status(client, run_id, {"completed"})
            assert run["rounds"]["1"]["samples_ok"] == target
        store.close()
