"""Small file helpers every stage needs: checksums and writes that never leave half a file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in chunks so memory stays flat."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if it is missing or unreadable (e.g. half-written)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name `path` in write errors that lack a file name (pyarrow's and numpy's on a full disk),
    so the user reads where it failed, not just "No space left on device"."""
    try:
        yield
    except OSError as e:
        if e.filename:
            raise
        if e.errno is None and "requested and" in str(e):  # numpy's short write: a full disk
            raise OSError(errno.ENOSPC, f"No space left on device ({e})", str(path)) from None
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
