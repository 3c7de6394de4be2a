"""Child processes never outlive a killed parent; a trainer waits for an orphan's lock instead of failing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selfspec.errors import AdapterConflict
from trainer.artifacts import training_lock
from trainer.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]

# The parent starts a watched child (told the parent's pid, as the job runner and launcher do: the
# parent may already be gone when the child starts), prints its pid, then waits to be killed.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import sys, time\\nfrom selfspec.processes import exit_with_parent\\n"
    "exit_with_parent(int(sys.argv[1]), interval_s=0.1)\\ntime.sleep(120)", str(os.getpid())])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_child_exits_after_its_parent_is_killed() -> None:
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as parent:  # closes its stdout pipe
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")


def _config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(base_model="m", dataset=tmp_path / "d.jsonl", output_dir=tmp_path / "adapters/a", adapter_name="a")


def test_second_trainer_waits_for_the_lock_then_proceeds(tmp_path: Path) -> None:
    config = _config(tmp_path)
    entered = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with training_lock(config):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(10)
    threading.Timer(0.5, release.set).start()  # the orphan goes away while we wait
    with training_lock(config, wait_s=20):
        acquired = True
    thread.join()
    assert acquired


def test_second_trainer_gives_up_when_the_lock_stays_held(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with training_lock(config), pytest.raises(AdapterConflict, match="already writing"):
        with training_lock(config, wait_s=0.2):
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")
def test_lowered_thread_priority_stays_in_that_thread_and_its_threads() -> None:
    """The API lowers its HTTP threads only: threads they start inherit it, a process another thread
    starts (a run worker, from the API's loop thread) does not."""
    seen: dict[str, int] = {}
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def lowered() -> None:
        from selfspec.processes import lower_thread_priority

        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["expected"] = min(base + 3, 19) - base  # nice stops at 19
        assert lower_thread_priority(3)
        seen["lowered"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - base

        def inner() -> None:
            seen["inherited"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - base

        child = threading.Thread(target=inner)
        child.start()
        child.join()

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    if seen["expected"] == 0:
        pytest.skip("this process already runs at nice 19: nothing left to lower")
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    spawned = subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                             capture_output=True, text=True, check=True)
    assert seen["lowered"] == seen["inherited"] == seen["expected"] > 0
    assert here == before  # the calling thread only: this one is untouched
    assert int(spawned.stdout) == here
