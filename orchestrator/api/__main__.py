"""`python -m orchestrator.api --port 8000 -c configs/demo.toml`: the API without the full CLI."""

from __future__ import annotations

import typer

from orchestrator.api.serve_command import serve_orchestrator_command
from selfspec.logging_setup import configure_logging

if __name__ == "__main__":
    configure_logging("INFO")
    typer.run(serve_orchestrator_command)
