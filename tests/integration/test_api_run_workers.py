"""Runs in worker processes of the API: a dead worker is recorded and resumable, its counters reach
/metrics, and the inline mode (runs inside the API process) still drives a run to the end."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from orchestrator.store import RunStore
from tests.fakes.openai_server import FakeState
from tests.integration.test_api_support import (
    api_config,
    assert_answered_once,
    fake_generator,
    running_api,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.integration


def worker_pids(data_dir: Path, run_id: str) -> list[int]:
    log = data_dir / "logs" / "runs" / f"{run_id}.log"
    text = log.read_text() if log.exists() else ""
    return [int(pid) for pid in re.findall(rf"run worker (\d+) drives run {re.escape(run_id)}", text)]


def test_a_killed_worker_fails_the_run_with_its_log_and_resume_finishes_it(tmp_path: Path) -> None:
    target = 40
    with fake_generator(FakeState(latency_s=0.05)) as gen_url:
        config = api_config(tmp_path, gen_url, target=target)
        store = RunStore(config.database_url)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            wait_for(lambda: store.sample_counts(run_id, 1).get("ok", 0) >= 5, what="5 samples")
            [pid] = worker_pids(config.data_dir, run_id)
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)  # the worker this test's API started for this run

            run = wait_for_status(client, run_id, {"failed"})
            assert "run worker exited with code -9" in run["reason"] and f"{run_id}.log" in run["reason"]
            at_failure = store.sample_counts(run_id, 1)["ok"]
            assert at_failure < target

            assert client.post(f"/v1/runs/{run_id}/resume").status_code == 200
            run = wait_for_status(client, run_id, {"completed", "failed"})
            assert run["status"] == "completed", run["reason"]
            assert run["rounds"]["1"]["samples_ok"] == target
            assert len(worker_pids(config.data_dir, run_id)) == 2
        assert_answered_once(store, run_id, target)
        store.close()


def test_worker_retries_are_counted_in_the_api_metrics(tmp_path: Path) -> None:
    state = FakeState(error_rate=0.3)
    with fake_generator(state) as gen_url:
        config = api_config(tmp_path, gen_url, target=20)
        with running_api(config) as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            assert wait_for_status(client, run_id, {"completed", "failed"})["status"] == "completed"
            metrics = client.get("/metrics").text
    retried = re.search(r"^selfspec_generator_retries_total (\S+)$", metrics, re.MULTILINE)
    assert retried is not None and state.errors_sent > 0
    # Every 5xx the fake sent was retried by the worker's client (retries = 2 per call, few exhaust them).
    assert 0 < float(retried.group(1)) <= state.errors_sent


def test_inline_runs_share_the_api_process_and_finish(tmp_path: Path) -> None:
    with fake_generator() as gen_url:
        config = api_config(tmp_path, gen_url, target=12)
        with running_api(config, run_workers="inline") as client:
            run_id = client.post("/v1/runs", json={}).json()["id"]
            run = wait_for_status(client, run_id, {"completed", "failed"})
    assert run["status"] == "completed" and run["rounds"]["1"]["samples_ok"] == 12
    assert worker_pids(config.data_dir, run_id) == []  # no worker process was started
