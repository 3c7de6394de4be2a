"""kill -9 the API server process during a run; a restarted server resumes the run by itself, exactly.

The fake generator is slow enough (0.25 s a call) that the run is still going when the killed API's
run worker notices its parent is gone (within a second) and exits."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.store import RunStore
from selfspec.processes import ManagedServer, free_port
from tests.integration.test_api_support import (
    REPO,
    api_server,
    assert_answered_once,
    config_data,
    config_toml,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.integration
TARGET = 60


def test_kill_minus_nine_of_the_api_then_restart_resumes_the_run(tmp_path: Path) -> None:
    gen_port, api_port = free_port(), free_port()
    fake = ManagedServer([sys.executable, "-m", "tests.fakes.serve", "--port", str(gen_port), "--latency", "0.25"],
                         url=f"http://127.0.0.1:{gen_port}", log_path=tmp_path / "fake.log",
                         env={**os.environ, "PYTHONPATH": str(REPO)}, startup_timeout_s=60)
    data = config_data(tmp_path, fake.url, target=TARGET)
    config = tmp_path / "api.toml"
    config.write_text(config_toml(data))
    store = RunStore(f"sqlite:///{tmp_path / 'data' / 'selfspec.db'}")
    api_log = tmp_path / "api.log"
    api = api_server(config, api_port, api_log)
    with fake:
        api.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
                run_id = client.post("/v1/runs", json={"run": {"name": "killed"}}).raise_for_status().json()["id"]
            wait_for(lambda: store.sample_counts(run_id, 1).get("ok", 0) >= 15, timeout_s=120, what="15 samples")
            assert api.process is not None
            api.process.send_signal(signal.SIGKILL)
            api.process.wait(timeout=30)
            at_kill = store.sample_counts(run_id, 1)["ok"]
            assert at_kill < TARGET, "killed too late to test resume"
            assert store.get_run(run_id).status == "running"  # nobody could mark it: it died

            api.start()  # nobody asks it to resume
            with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
                run = wait_for_status(client, run_id, {"completed", "failed"}, timeout_s=180)
                assert run["status"] == "completed", run["reason"]
                assert run["rounds"]["1"]["samples_ok"] == TARGET
        finally:
            api.stop(timeout_s=30)
    assert_answered_once(store, run_id, TARGET)
    store.close()
    assert "resuming run" in api_log.read_text(errors="replace")
    # The killed API's worker stopped (parent watchdog) and a new one finished the run: two drivers in turn.
    worker_log = (tmp_path / "data" / "logs" / "runs" / f"{run_id}.log").read_text()
    assert worker_log.count(f"drives run {run_id}") == 2
