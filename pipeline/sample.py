"""A sample of a dataset's text and how much the whole holds, for `--dry-run` estimates.

Reads only the start of the source (about SAMPLE_CHARS of text, at most SAMPLE_DOCS documents)
and extrapolates by how many bytes of the source that start took: for gzip, the compressed
bytes read so far. Cached download shards, when present, give exact document and character
counts and are sampled instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from isal import isal_zlib

from util.errors import InputError

SAMPLE_CHARS = 4_000_000
SAMPLE_DOCS = 4_000


@dataclass(frozen=True)
class Sample:
    """The sampled texts, and the whole source's documents and characters (estimated by the
    share of the source's bytes the sample took, unless `exact`)."""

    texts: list[str]
    docs: int
    chars: int
    exact: bool
    origin: str  # what was sampled, for people

    @property
    def sample_chars(self) -> int:
        return sum(map(len, self.texts))


class _Budget:
    """Collects texts until the sample is big enough."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.chars = 0

    @property
    def full(self) -> bool:
        return self.chars >= SAMPLE_CHARS or len(self.texts) >= SAMPLE_DOCS

    def add(self, text: Any) -> None:
        if isinstance(text, str) and text.strip():  # as download: blank documents are skipped
            self.texts.append(text)
            self.chars += len(text)


def sample_files(files: list[Path], fmt: str, text_field: str) -> Sample:
    """Sample local source files in the order download reads them."""
    budget = _Budget()
    total = sum(p.stat().st_size for p in files)
    read = 0.0  # source bytes the sample took (whole files, plus part of the last)
    for path in files:
        if budget.full:
            break
        size = path.stat().st_size
        read += size * _take(path, fmt, text_field, budget)
    return _extrapolate(budget, total, read, f"{len(files)} source file(s)")


def sample_shards(folder: Path, stats: dict[str, Any]) -> Sample:
    """Sample a cached download artifact: its counts are exact, only tokens are estimated."""
    budget = _Budget()
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=500, columns=["text"]):
            for text in batch.column(0).to_pylist():
                budget.add(text)
            if budget.full:
                break
        if budget.full:
            break
    return Sample(budget.texts, stats["docs"], stats["chars"], True, "cached download shards")


def _extrapolate(budget: _Budget, total: int, read: float, origin: str) -> Sample:
    exact = read >= total
    scale = 1.0 if exact or not read else total / read
    docs, chars = round(len(budget.texts) * scale), round(budget.chars * scale)
    return Sample(budget.texts, docs, chars, exact, origin)


def _take(path: Path, fmt: str, text_field: str, budget: _Budget) -> float:
    """Add `path`'s documents to the sample until it is full; the share of the file read."""
    if fmt == "txt":
        budget.add(path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff"))
        return 1.0
    if fmt == "parquet":
        return _take_parquet(path, text_field, budget)
    for lineno, (line, consumed) in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InputError(f"{path}:{lineno}: malformed JSON ({e})") from None
        budget.add(obj.get(text_field) if isinstance(obj, dict) else None)
        if budget.full:
            return min(1.0, consumed / max(1, path.stat().st_size))
    return 1.0


def _lines(path: Path, block: int = 1 << 16) -> Iterator[tuple[bytes, float]]:
    """(line, bytes of the file read up to its end): gzip is decompressed here, a block at a
    time, and a line's position within a block's output is mapped back onto the block's
    compressed bytes. That count is what the sample's share of the file is measured by."""
    gunzip = _Gunzip() if path.name.endswith(".gz") else None
    rest, consumed = b"", 0
    with open(path, "rb") as f:
        while data := f.read(block):
            before, consumed = consumed, consumed + len(data)
            out = gunzip(data) if gunzip else data
            text, start = rest + out, len(rest)
            *lines, rest = text.split(b"\n")
            end = 0
            for line in lines:
                end += len(line) + 1
                yield line, before + len(data) * max(0, end - start) / max(1, len(out))
    if rest:
        yield rest, consumed


class _Gunzip:
    """Decompress gzip block by block, across members (a multi-member file starts anew)."""

    def __init__(self) -> None:
        self.inflate = isal_zlib.decompressobj(wbits=31)

    def __call__(self, data: bytes) -> bytes:
        out = b""
        while data:
            out += self.inflate.decompress(data)
            data = self.inflate.unused_data
            if data:
                self.inflate = isal_zlib.decompressobj(wbits=31)
        return out


def _take_parquet(path: Path, text_field: str, budget: _Budget) -> float:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # arrow raises several types; all mean "not readable"
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    if text_field not in pf.schema_arrow.names:
        raise InputError(f"{path}: no text field {text_field!r}")
    rows, total = 0, max(1, pf.metadata.num_rows)
    for batch in pf.iter_batches(batch_size=500, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            budget.add(text)
        rows += batch.num_rows
        if budget.full:
            return rows / total
    return 1.0
