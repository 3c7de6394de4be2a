from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture(autouse=True)
def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run configs read SELFSPEC_* env vars; tests must not inherit a developer's overrides."""
    keep = {"SELFSPEC_CACHE_DIR", "SELFSPEC_ES_URL", "SELFSPEC_VLLM_URL", "SELFSPEC_VLLM_PYTHON"}
    for key in list(os.environ):
        if (key.startswith("SELFSPEC_") and key not in keep) or key == "VLLM_API_KEY":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The real tiny model (SmolLM2-135M-Instruct), provisioned once per machine into the cache."""
    from selfspec.models import pull_tiny_model

    cache = Path(os.environ.get("SELFSPEC_CACHE_DIR", REPO / ".cache/selfspec"))
    return pull_tiny_model(cache)
