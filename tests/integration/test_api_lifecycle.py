"""A small run through the REST API against the fake generator: create, follow, page, download."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrator.store import RunStore
from tests.integration.test_api_support import (
    api_config,
    fake_generator,
    read_events,
    running_api,
    wait_for_status,
)

pytestmark = pytest.mark.integration


def _page_all(client: httpx.Client, run_id: str, *, limit: int) -> list[dict]:
    items, cursor = [], 0
    while True:
        page = client.get(f"/v1/runs/{run_id}/samples", params={"cursor": cursor, "limit": limit}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


def test_api_run_lifecycle(tmp_path: Path) -> None:
    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url, target=15)
        with running_api(config) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            created = client.post("/v1/runs", json={"run": {"name": "life"}, "generation": {"target_per_round": 15}})
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            assert created.headers["location"] == f"/v1/runs/{run_id}"
            assert run_id in [r["id"] for r in client.get("/v1/runs").json()]

            events = read_events(client, run_id)  # follows the live run until it ends
            run = wait_for_status(client, run_id, {"completed"})
            ids = [e.id for e in events]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
            kinds = {e.type for e in events}
            assert {"run_created", "status", "instructions", "sample", "round_done"} <= kinds
            assert events[-1].type == "status" and events[-1].data["data"]["status"] == "completed"

            assert run["rounds"]["1"]["samples_ok"] == 15 and run["samples_ok"] == 15
            assert run["rounds"]["1"]["queue_depth"] == 0 and run["phase"] == "done"
            assert run["config"]["generation"]["target_per_round"] == 15

            # paging: every sample once, in seq order, whatever the page size
            everything = _page_all(client, run_id, limit=500)
            assert len(everything) == 15
            assert _page_all(client, run_id, limit=4) == everything
            seqs = [s["seq"] for s in everything]
            assert seqs == sorted(seqs)
            assert all(len(s["retrieved"]) == 5 for s in everything)

            passages = client.get(f"/v1/runs/{run_id}/samples/{everything[0]['id']}/passages").json()["passages"]
            assert [p["doc_id"] for p in passages] == [d["doc_id"] for d in everything[0]["retrieved"]]
            assert all(p["found"] and p["text"] for p in passages)

            # the download equals the exported files, byte for byte
            round_dir = config.data_dir / "runs" / run_id / "round1"
            for fmt in ("sft", "alpaca", "messages"):
                response = client.get(f"/v1/runs/{run_id}/dataset", params={"round": 1, "format": fmt})
                assert response.status_code == 200
                assert response.content == (round_dir / f"{fmt}.jsonl").read_bytes()
            metrics = client.get("/metrics").text
            assert "selfspec_api_requests_in_flight" in metrics and "selfspec_generator_retries_total" in metrics

    store = RunStore(config.database_url)
    assert store.sample_counts(run_id, 1) == {"ok": 15}
    store.close()


def test_api_samples_paging_is_stable_while_the_run_writes(tmp_path: Path) -> None:
    from tests.fakes.openai_server import FakeState

    with fake_generator(FakeState(latency_s=0.02)) as gen_url:
        config = api_config(tmp_path, gen_url, target=40)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            seen: list[int] = []
            cursor = 0
            while True:
                page = client.get(f"/v1/runs/{run_id}/samples", params={"cursor": cursor, "limit": 3}).json()
                seen += [s["seq"] for s in page["items"]]
                cursor = page["next_cursor"]
                status = client.get(f"/v1/runs/{run_id}").json()
                if not page["items"] and status["status"] == "completed" and not status["active"]:
                    break
            final = [s["seq"] for s in client.get(f"/v1/runs/{run_id}/samples", params={"limit": 500}).json()["items"]]
            assert seen == final and len(final) == 40  # nothing skipped, nothing twice
