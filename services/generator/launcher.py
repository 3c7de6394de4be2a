"""Start and stop a generator server process we own (embedded or vLLM), waiting for /health."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from selfspec.auth import SECRET_ENV
from selfspec.errors import BackendUnavailable

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None,
                 health_path: str = "/health") -> None:
    def healthy() -> bool:
        if process is not None and process.poll() is not None:
            raise BackendUnavailable(f"server process exited with code {process.returncode}", backend=url)
        try:
            return httpx.get(f"{url}{health_path}", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    retrying = Retrying(retry=retry_if_result(lambda ok: not ok), stop=stop_after_delay(timeout_s),
                        wait=wait_fixed(0.5), retry_error_callback=lambda state: False)
    if not retrying(healthy):
        raise BackendUnavailable(f"no healthy answer within {timeout_s:.0f}s", backend=url)


class ManagedServer:
    """A child server process: started here, ended here by its PID, logs in a file."""

    def __init__(self, command: list[str], *, url: str, log_path: Path, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 180.0, health_path: str = "/health", cwd: Path | None = None) -> None:
        self.command, self.url, self.log_path = command, url, log_path
        self.env, self.startup_timeout_s = env, startup_timeout_s
        self.health_path, self.cwd = health_path, cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        log.info("starting %s (log: %s)", " ".join(self.command[:6]), self.log_path)
        self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=self.cwd, start_new_session=True)
        log_file.close()
        try:
            wait_healthy(self.url, timeout_s=self.startup_timeout_s, process=self.process,
                         health_path=self.health_path)
        except BackendUnavailable:
            self.stop()
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BackendUnavailable("server did not become healthy; last log lines:\n" + "\n".join(tail),
                                     backend=self.url) from None
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


def child_env(*, drop: Iterable[str] = SECRET_ENV) -> dict[str, str]:
    """This process's environment for a child, without the secrets in `drop` (by default every token:
    an embedded generator we start binds loopback and needs none; it would refuse our clients with
    a `VLLM_API_KEY` meant for a remote vLLM)."""
    env = {key: value for key, value in os.environ.items() if key not in set(drop)}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env
