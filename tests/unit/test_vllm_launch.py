"""Launching vLLM as a run's child: fp32 on CPU, and it never outlives the process that started it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.generator.launcher import embedded_generator_command
from services.generator.vllm import cpu_defaults, run_with_parent, vllm_command


def test_cpu_defaults_are_fp32_with_a_small_kv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert cpu_defaults() == ("float32", 2)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "6")
    assert cpu_defaults() == ("float32", None)  # the user's setting wins
    command = vllm_command("/m", served_name="gemma3-270m", port=1, dtype="float32")
    assert command[command.index("--dtype") + 1] == "float32" and "--enable-lora" in command


def test_child_generator_command_names_the_engine(tmp_path: Path) -> None:
    command = embedded_generator_command(model="gemma3-270m", port=5, adapters_dir=tmp_path, cache_dir=tmp_path,
                                         engine="vllm")
    assert command[command.index("--engine") + 1] == "vllm" and "--parent-pid" in command


def test_supervised_child_ends_when_its_parent_is_gone() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    reaper = threading.Thread(target=parent.wait)  # an exited, unreaped parent would still answer kill(pid, 0)
    reaper.start()
    child_code = "import time; time.sleep(60)"
    # Returns once the (short-lived) parent has exited: the child was terminated, not left running.
    code = run_with_parent([sys.executable, "-c", child_code], env={}, parent_pid=parent.pid, poll_s=0.1,
                           grace_s=5)
    reaper.join()
    assert code != 0  # ended by SIGTERM
