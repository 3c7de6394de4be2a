"""Adapter names and paths: validated once, used by the generator, orchestrator and CLI."""

from __future__ import annotations

import re
from pathlib import Path

from selfspec.errors import AdapterInvalid

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_adapter_name(name: str) -> str:
    """Names become URL parts and folder names: no separators, no dot-dot, bounded length."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise AdapterInvalid(
            f"invalid adapter name {name!r}: use 1-128 letters, digits, '_', '-', '.', "
            "starting with a letter or digit, without '..' or path separators"
        )
    return name


def validate_adapter_path(path: str | Path, adapters_dir: Path) -> Path:
    """Resolve `path` (absolute, or relative to adapters_dir) and refuse anything outside adapters_dir."""
    root = Path(adapters_dir).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise AdapterInvalid(f"adapter path {str(path)!r} lies outside the adapters dir {str(root)!r}")
    return resolved
