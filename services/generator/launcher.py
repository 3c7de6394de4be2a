"""The command that starts a generator server process we own (embedded or vLLM); `selfspec.processes`
runs it (`ManagedServer`) and waits for /health."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def embedded_generator_command(*, model: str, port: int, adapters_dir: Path, cache_dir: Path,
                               max_batch: int = 16, threads: int | None = None, engine: str = "embedded") -> list[str]:
    """`selfspec serve generator` as a child of this process (it exits with us), embedded or vLLM."""
    command = [
        sys.executable, "-m", "selfspec.cli", "serve", "generator", "--host", "127.0.0.1", "--port", str(port),
        "--model", model, "--adapters-dir", str(adapters_dir), "--cache-dir", str(cache_dir),
        "--max-batch", str(max_batch), "--parent-pid", str(os.getpid()), "--engine", engine,
    ]
    if threads:
        command += ["--threads", str(threads)]
    return command
