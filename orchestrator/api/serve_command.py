"""`selfspec serve orchestrator`: the REST API and dashboard over one run config (registered in selfspec.cli).

    selfspec serve orchestrator -c configs/demo.toml                  # http://127.0.0.1:8000/ui/
    SELFSPEC_API_TOKEN=... selfspec serve orchestrator --host 0.0.0.0  # any other interface needs a token

The config gives the services (generator URLs, retriever), the storage dirs and the defaults that
`POST /v1/runs` bodies are merged over.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.api.settings import ApiSettings
from selfspec.auth import is_loopback
from selfspec.errors import SelfSpecError
from selfspec.settings import load_config

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
GRACEFUL_SHUTDOWN_S = 15  # open SSE streams are closed after this on shutdown


def check_bind(host: str, settings: ApiSettings) -> None:
    """Refuse to listen beyond loopback without a bearer token."""
    if not is_loopback(host) and settings.token_value is None:
        raise typer.BadParameter(
            f"refusing to serve on {host!r} without a token: set SELFSPEC_API_TOKEN, or bind 127.0.0.1",
            param_hint="--host",
        )


def serve_orchestrator_command(
    host: Annotated[str, typer.Option(help="Interface to bind; non-loopback needs SELFSPEC_API_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="run config TOML (services, storage, "
                                                "defaults for new runs)")] = None,
) -> None:
    """Serve the orchestrator REST API (/v1, /docs, /metrics) and the dashboard (/ui)."""
    import uvicorn

    from orchestrator.api.main import create_app

    settings = ApiSettings()
    check_bind(host, settings)
    try:
        run_config = load_config(config)
    except SelfSpecError as err:
        log.error("%s", err)
        raise typer.Exit(code=2) from err
    log.info("orchestrator API on http://%s:%d (dashboard /ui/, docs /docs; token %s)", host, port,
             "required" if settings.token_value else "off")
    uvicorn.run(create_app(run_config, settings=settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
