"""The exact vLLM launch for selfspec: OpenAI server with runtime LoRA loading enabled."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def vllm_command(
    model: str,
    *,
    served_name: str,
    port: int,
    host: str = "127.0.0.1",
    max_lora_rank: int = 8,
    max_loras: int = 4,
    max_model_len: int = 4096,
    dtype: str = "auto",
    python: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """Command line for `vllm.entrypoints.openai.api_server` with LoRA on (see STACK-NOTES for CPU)."""
    return [
        python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_name,
        "--host", host,
        "--port", str(port),
        "--enable-lora",
        "--max-lora-rank", str(max_lora_rank),
        "--max-loras", str(max_loras),
        "--max-model-len", str(max_model_len),
        "--dtype", dtype,
        *(extra or []),
    ]


def vllm_env(*, cpu_kv_cache_gib: int | None = None, api_keys: list[str] | None = None) -> dict[str, str]:
    """vLLM's environment. The API key goes in as `VLLM_API_KEY`, not on the command line (where `ps` shows
    it); that variable holds one key, so several are refused rather than half applied."""
    env = dict(os.environ)
    # Without this flag vLLM refuses /v1/load_lora_adapter at run time.
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if api_keys:
        if len(api_keys) > 1:
            raise ValueError("vLLM reads one key from VLLM_API_KEY; pass a single --api-key")
        env["VLLM_API_KEY"] = api_keys[0]
    if cpu_kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
    return env


def cpu_defaults() -> tuple[str, int | None]:
    """(dtype, KV-cache GiB) for this host: vLLM's auto dtype on CUDA; fp32 and a 2 GiB KV cache on CPU
    (STACK-NOTES: on AVX2-only CPUs bf16 runs ~3x slower; vLLM's CPU default cache is larger than a
    small model needs). `VLLM_CPU_KVCACHE_SPACE` set by the user wins."""
    import torch

    if torch.cuda.is_available():
        return "auto", None
    return "float32", None if os.environ.get("VLLM_CPU_KVCACHE_SPACE") else 2


def run_with_parent(command: list[str], *, env: dict[str, str], parent_pid: int, poll_s: float = 1.0,
                    grace_s: float = 30.0) -> int:
    """Run vLLM as a child and end it (SIGTERM, then SIGKILL to its process group) when it is told to
    stop or when `parent_pid` is gone; returns its exit code."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, env=env, start_new_session=True)

    def stop(*_: object) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while process.poll() is None:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                stop()
                break
            time.sleep(poll_s)
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def find_vllm_python(repo_root: Path) -> str | None:
    """The vLLM interpreter: $SELFSPEC_VLLM_PYTHON, the repo's .venv-vllm, or this one if it has vllm."""
    candidates = [os.environ.get("SELFSPEC_VLLM_PYTHON"), str(repo_root / ".venv-vllm/bin/python")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            return sys.executable
    except ValueError:
        pass
    return shutil.which("vllm") and sys.executable
