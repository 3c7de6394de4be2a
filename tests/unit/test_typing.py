"""The packages and bench/ stay mypy-strict clean (pyproject's [tool.mypy]; `make lint` runs the same check).

mypy keeps its incremental cache in pytest's cache dir (.pytest_cache/d/mypy, or the test's tmp dir under
`-p no:cacheprovider`): a cold run takes ~40-70 s on two cores, a warm one a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STRICT_PACKAGES = ("selfspec", "services", "orchestrator", "trainer", "evaluation", "bench")
TIMEOUT_S = 600  # a cold cache on a busy machine; a hang, not a slow run, is what this guards against


def test_typing_strict_packages_pass_mypy(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache_dir = cache.mkdir("mypy") if cache is not None else tmp_path / "mypy"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache_dir), *STRICT_PACKAGES],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
