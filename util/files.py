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

import xxhash

CHECKSUM = "xxh3"  # what receipts and manifests call a file's checksum


def file_checksum(path: Path, chunk: int = 8 << 20) -> str:
    """Hex xxh3-128 of a file, read in chunks so memory stays flat.

    It tells whether a file still holds the bytes pipe wrote (damage, truncation, a half
    copy) at memory speed; sha256 cost a second of CPU per 1.7 GB, on every file pipe writes.
    Identities of a user's inputs stay sha256 (pipeline/fingerprint.py), as hubs publish them.
    """
    return _file_digest(path, xxhash.xxh3_128(), chunk)


class ChecksummedFile:
    """A file being written that is checksummed (as `file_checksum` would) as it is written,
    so that sealing it does not read it back. For writers that take a file object (pyarrow's
    ParquetWriter): they only append."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")
        self._checksum = xxhash.xxh3_128()

    def write(self, data: bytes) -> int:
        self._checksum.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def checksum(self) -> str:
        return self._checksum.hexdigest()


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """Hex sha256 of a file (an input's identity), read in chunks so memory stays flat."""
    return _file_digest(path, hashlib.sha256(), chunk)


def _file_digest(path: Path, h: Any, chunk: int) -> str:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_matches(path: Path, record: dict[str, Any]) -> bool:
    """Whether a file has the checksum a receipt or manifest recorded for it (sha256 in those
    written by pipe before it switched to xxh3)."""
    if CHECKSUM in record:
        return file_checksum(path) == record[CHECKSUM]
    return "sha256" in record and file_sha256(path) == record["sha256"]


DIGESTS = ".checksums.json"


def remember_digests(folder: Path, digests: dict[str, str]) -> None:
    """Record checksums a build already computed, with each file's size and mtime, so that
    publishing the folder does not read those files again (see `known_digest`). Nothing to
    record writes nothing (a build that wrote no file leaves its work folder empty)."""
    if not digests:
        return
    entries = {}
    for name, digest in digests.items():
        st = (folder / name).stat()
        entries[name] = {CHECKSUM: digest, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    atomic_write_json(folder / DIGESTS, entries)


def known_digest(folder: Path, name: str, memo: dict[str, Any]) -> str:
    """Checksum of `folder/name`: the remembered one while size and mtime still match."""
    path = folder / name
    st = path.stat()
    entry = memo.get(name)
    if entry and (entry["bytes"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
        return entry[CHECKSUM]
    return file_checksum(path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(tmp), open(tmp, "w", encoding="utf-8") as f:
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
