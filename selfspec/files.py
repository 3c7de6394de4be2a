"""Atomic file writes (a crash or a concurrent reader never sees half a file under its final name) and hashes.

The temporary file sits next to the target (same filesystem, so the rename is atomic) under a name
`mkstemp` makes unique, so two writers (threads or processes) of one path never share a temporary.
The file is fsynced before the rename and the directory after it, so a power loss leaves either the
old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[str]]:
    """A text file to write that replaces `path` when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other services (another user) read these files
        tmp.replace(path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def replace_dir(new: Path, target: Path) -> None:
    """Put directory `new` (beside `target`, same filesystem) in place of `target`, whole.

    Where Linux offers `renameat2(RENAME_EXCHANGE)` the two directories swap in one atomic step; elsewhere
    `target` is renamed aside first, so a crash between the two renames leaves no `target` (and the old one
    as `.<name>.old-*`), never a mix of old and new files. The old contents are deleted afterwards.
    """
    if not target.exists():
        new.rename(target)
        fsync_dir(target.parent)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if _exchange(new, target):
        new.rename(old)  # `new` now holds the previous contents
    else:
        target.rename(old)
        new.rename(target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)
