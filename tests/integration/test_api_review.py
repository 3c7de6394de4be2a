"""Review through the API: a run with `rounds.review` pauses after synthesis (in its worker process),
rejects/restores/edits are events with who, approve goes on, and export and download honour the review."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_api_adapters_evals import FakeTrainer, fake_trainer_services
from tests.integration.test_api_support import (
    api_config,
    fake_generator,
    running_api,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.integration

TOKEN = "review-token"
WHO = "token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]


def _settled(client: httpx.Client, run_id: str, status: str) -> dict[str, Any]:
    """The run in `status` with no task driving it any more (its worker has exited)."""
    wait_for_status(client, run_id, {status, "failed"})
    wait_for(lambda: not client.get(f"/v1/runs/{run_id}").json()["active"], what="the run's worker to exit")
    run = client.get(f"/v1/runs/{run_id}").raise_for_status().json()
    assert run["status"] == status, run
    return run


def _sft(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_review_pauses_the_run_and_the_export_honours_rejects_and_edits(tmp_path: Path) -> None:
    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url, target=6)
        with running_api(config, token=TOKEN) as client:
            run_id = client.post("/v1/runs", json={"run": {"name": "review"}, "rounds": {"review": True}}) \
                .raise_for_status().json()["id"]
            run = _settled(client, run_id, "awaiting_review")
            assert run["phase"] == "round1:review" and run["samples_ok"] == 6
            export = tmp_path / "data" / "runs" / run_id / "round1" / "sft.jsonl"
            assert not export.exists()  # nothing exported before the approval

            items = client.get(f"/v1/runs/{run_id}/review/items", params={"status": "ok"}).raise_for_status().json()
            ok = [item["sample"] for item in items["items"]]
            assert len(ok) == 6 and all(item["included"] for item in items["items"])
            assert all(s["retrieved"] and s["model"] == "fake-base" for s in ok)
            first, second, third = (s["id"] for s in ok[:3])
            base = f"/v1/runs/{run_id}/samples"

            state = client.post(f"{base}/{first}/reject", json={"note": "wrong"}).raise_for_status().json()
            assert state == {**state, "decision": "rejected", "included": False, "changed": True,
                             "reviewed_by": WHO}
            assert client.post(f"{base}/{first}/restore").raise_for_status().json()["included"] is True
            client.post(f"{base}/{second}/reject").raise_for_status()
            client.post(f"{base}/{third}/edit", json={"response": "An edited answer."}).raise_for_status()
            assert client.post(f"{base}/nope/reject").status_code == 404
            assert client.post(f"{base}/{third}/edit", json={"response": ""}).status_code == 422
            assert httpx.post(f"{client.base_url}{base}/{third}/reject").status_code == 401

            rejected = client.get(f"/v1/runs/{run_id}/review/items", params={"review": "rejected"}).json()["items"]
            assert [i["sample"]["id"] for i in rejected] == [second]
            download = client.get(f"/v1/runs/{run_id}/dataset").raise_for_status().text
            assert second not in download and "An edited answer." in download

            assert client.post(f"/v1/runs/{run_id}/approve").raise_for_status().json()["status"] == "running"
            _settled(client, run_id, "completed")
            records = _sft(export)
            assert sorted(r["source_sample_id"] for r in records) == sorted(s["id"] for s in ok if s["id"] != second)
            assert next(r for r in records if r["source_sample_id"] == third)["output"] == "An edited answer."
            assert "1 rejected, 0 restored, 1 edited" in (export.parent / "README.md").read_text()  # the card

            log = client.get(f"/v1/runs/{run_id}/review/log").raise_for_status().json()
            assert [(e["action"], e["sample_id"], e["by"]) for e in log] == [
                ("reject", first, WHO), ("restore", first, WHO), ("reject", second, WHO), ("edit", third, WHO),
                ("approve", None, WHO)]
            assert log[0]["note"] == "wrong" and log[3]["after"] == "An edited answer."

            # A completed run: a later change shows in the files once approved (exported again).
            client.post(f"{base}/{first}/reject").raise_for_status()
            assert client.post(f"/v1/runs/{run_id}/approve").raise_for_status().json()["status"] == "completed"
            assert first not in {r["source_sample_id"] for r in _sft(export)}
            assert "2 rejected, 0 restored, 1 edited" in (export.parent / "README.md").read_text()
            assert client.post("/v1/runs/nope/approve").status_code == 404


def test_review_without_a_token_is_local_and_a_run_without_review_goes_on(tmp_path: Path) -> None:
    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url, target=3)
        with running_api(config, run_workers="inline") as client:
            run_id = client.post("/v1/runs", json={"run": {"name": "noreview"}}).raise_for_status().json()["id"]
            _settled(client, run_id, "completed")
            assert client.post(f"/v1/runs/{run_id}/approve").raise_for_status().json()["status"] == "completed"
            (item, *_) = client.get(f"/v1/runs/{run_id}/review/items", params={"status": "ok"}).json()["items"]
            client.post(f"/v1/runs/{run_id}/samples/{item['sample']['id']}/reject").raise_for_status()
            log = client.get(f"/v1/runs/{run_id}/review/log").json()
            assert [(e["action"], e["by"]) for e in log] == [("approve", "local"), ("export", "local"),
                                                             ("reject", "local")]


def test_review_training_uses_the_reviewed_round(tmp_path: Path) -> None:
    trainers: list[FakeTrainer] = []
    services_with_fake_trainer = fake_trainer_services(trainers)

    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url, target=5)
        with running_api(config, services_factory=services_with_fake_trainer) as client:
            body = {"rounds": {"count": 1, "review": True}, "training": {"enabled": True}}
            run_id = client.post("/v1/runs", json=body).raise_for_status().json()["id"]
            _settled(client, run_id, "awaiting_review")
            assert trainers[0].calls == []  # nothing trained before the approval
            items = client.get(f"/v1/runs/{run_id}/review/items", params={"status": "ok"}).json()["items"]
            for item in items[:2]:
                client.post(f"/v1/runs/{run_id}/samples/{item['sample']['id']}/reject").raise_for_status()
            client.post(f"/v1/runs/{run_id}/approve").raise_for_status()
            _settled(client, run_id, "completed")
            assert trainers[0].calls == [(f"{run_id}-r1", 3)]  # 5 samples, 2 rejected
