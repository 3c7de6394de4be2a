"""Prompt templates: one Jinja file per stage in `selfspec/prompts/`, rendered with strict undefined."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@cache
def template_environment(directory: Path = PROMPTS_DIR) -> Environment:
    """The Jinja environment every prompt folder uses: strict undefined, no autoescape, tidy blocks."""
    return Environment(
        loader=FileSystemLoader(directory),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **variables: Any) -> str:
    """Render prompt `name` (file `<name>.jinja`); a missing variable raises, never renders empty."""
    return template_environment().get_template(f"{name}.jinja").render(**variables)


@cache
def template_hash(name: str) -> str:
    """Short hash of a template's source, stored with every sample it produced."""
    source = (PROMPTS_DIR / f"{name}.jinja").read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]
