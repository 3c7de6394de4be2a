"""kill -9 a real `selfspec run` process at random points, resume it, and check nothing is lost or doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orchestrator.store import RunStore, instructions, prompts, samples
from selfspec.processes import ManagedServer, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TARGET = 60


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""
[run]
name = "killtest"
seeds = "{REPO / 'seeds/biomedical.jsonl'}"
corpus = "{REPO / 'corpora/biomedical.jsonl'}"
index = "kill-test"
[generation]
model = "fake-base"
target_per_round = {TARGET}
instruction_workers = 3
response_workers = 6
[rounds]
count = 1
[training]
enabled = false
[services]
generator_urls = ["{url}"]
backoff_s = 0.01
[storage]
data_dir = "{tmp_path / 'data'}"
""")
    return path


def _ok_samples(store: RunStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(samples).where(samples.c.status == "ok")).scalar())


def _run(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The run's stderr goes to `log` (a pipe nobody reads could fill up and stall the child, and one left
    open after a kill is an unclosed file)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as stderr:
        return subprocess.Popen([sys.executable, "-m", "selfspec.cli", "run", "-c", str(config), *extra],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def test_kill_minus_nine_and_resume_three_times(tmp_path: Path) -> None:
    port = free_port()
    fake = ManagedServer([sys.executable, "-m", "tests.fakes.serve", "--port", str(port), "--latency", "0.03"],
                         url=f"http://127.0.0.1:{port}", log_path=tmp_path / "fake.log",
                         env={**os.environ, "PYTHONPATH": str(REPO)}, startup_timeout_s=60)
    config = _config(tmp_path, fake.url)
    rng = random.Random(1234)
    with fake:
        store = RunStore(f"sqlite:///{tmp_path / 'data' / 'selfspec.db'}")
        log = tmp_path / "run.log"
        process = _run(config, log)
        run_id = None
        kills = 0
        last = 0
        while kills < 3:
            threshold = last + rng.randint(3, 12)
            deadline = time.monotonic() + 120
            while _ok_samples(store) < threshold:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "run made no progress"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            last = _ok_samples(store)
            assert last < TARGET, "killed too late to test resume"
            run_id = run_id or store.list_runs()[0].id
            process = _run(config, log, "--resume", run_id)
        assert process.wait(timeout=180) == 0, log.read_text()[-3000:]

        with store.engine.connect() as conn:
            kept = conn.execute(select(instructions.c.id).where(instructions.c.verdict == "kept")).scalars().all()
            sample_rows = conn.execute(select(samples.c.instruction_id, samples.c.status)).all()
            prompt_count = conn.execute(select(func.count()).select_from(prompts)).scalar()
        assert len(sample_rows) == TARGET and all(status == "ok" for _, status in sample_rows)
        assert len(kept) == TARGET == len(set(kept))
        assert {i for i, _ in sample_rows} == set(kept)  # every kept instruction answered exactly once
        assert prompt_count and store.get_run(run_id).status == "completed"
        store.close()
