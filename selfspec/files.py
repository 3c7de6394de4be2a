"""Atomic file writes: a crash or a concurrent reader never sees half a file under the final name.

The temporary file sits next to the target (same filesystem, so the rename is atomic) and carries the
writer's pid, so two processes writing one path never share a temporary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[str]]:
    """A text file to write that replaces `path` when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            yield handle
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)
