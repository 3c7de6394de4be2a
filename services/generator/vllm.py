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
