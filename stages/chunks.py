"""Tokenize work units: consecutive row groups of one Parquet shard, about CHUNK_BYTES of text.

Locally the driver tokenizes a chunk and hands its arrays straight to the merge
(stages/merge.py), which journals it. A Ray task on any node of a cluster instead seals its
chunk here: token arrays (int32, each document followed by the EOD) with a receipt of
checksums, in the work folder on the shared cache. A sealed chunk is never redone; a damaged
one fails its checksum and is.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stages.encoder import counts
from stages.engine import HFEngine
from stages.engine_text import as_large_strings
from stages.splits import SPLITS, SplitPlan
from util.errors import InputError
from util.faults import maybe_die
from util.files import CHECKSUM, atomic_write_json, file_checksum, file_matches, read_json, writing

# Big enough that per-chunk costs (a Parquet read, a journal entry, a receipt) vanish next to
# encoding, small enough that a few chunks in flight keep memory flat (stages/tokenize.py
# encodes several at once) and that the first read and the last write, which nothing overlaps,
# stay short. At x16 on 2 cores, three at a time, 8 MB chunks tokenize as fast as 16 MB ones
# (3.2-3.4 s) with 0.2 GB less peak memory; 32 MB ones took 3.7 s.
CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class Chunk:
    """One unit of tokenize work: `row_groups` consecutive row groups of a Parquet file."""

    file: str
    row_group: int  # the first
    row_groups: int = 1

    @property
    def name(self) -> str:
        return f"{Path(self.file).stem}-rg{self.row_group:05d}"

    def read(self, columns: list[str]) -> pa.Table:
        """Its rows, decoded straight from the file's pages in the page cache (mapped: no
        copy into read buffers first)."""
        groups = range(self.row_group, self.row_group + self.row_groups)
        return pq.ParquetFile(self.file, memory_map=True).read_row_groups(groups, columns=columns)


def list_chunks(files: Iterable[Path]) -> list[Chunk]:
    """Chunks in corpus order: row groups gathered until they hold about CHUNK_BYTES."""
    chunks = []
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None
        first, size = 0, 0
        for g in range(meta.num_row_groups):
            size += meta.row_group(g).total_byte_size
            if size >= CHUNK_BYTES or g == meta.num_row_groups - 1:
                chunks.append(Chunk(str(path), first, g + 1 - first))
                first, size = g + 1, 0
    return chunks


def chunk_dir(work: Path, chunk: Chunk) -> Path:
    return work / "chunks" / chunk.name


def chunk_is_done(work: Path, chunk: Chunk) -> bool:
    """Sealed and intact: the receipt exists and every file still has its recorded checksum."""
    return verified(chunk_dir(work, chunk))


def verified(folder: Path) -> bool:
    receipt = read_json(folder / "receipt.json")
    if not receipt:
        return False
    digests = receipt.get(CHECKSUM) or {}
    return bool(digests) and all(
        (folder / name).is_file() and file_matches(folder / name, {CHECKSUM: digest})
        for name, digest in digests.items()
    )


def chunk_receipt(work: Path, chunk: Chunk) -> dict[str, Any]:
    return read_json(chunk_dir(work, chunk) / "receipt.json")


def tokenize_chunk(
    work: Path, chunk: Chunk, plan: SplitPlan, encoder: HFEngine, node: str | None = None
) -> dict[str, Any]:
    """Tokenize one chunk into `work/chunks/<name>/`, sealed by receipt.json (returned)."""
    ids, texts = load(chunk)
    return seal(work, chunk, plan, ids, encoder.encode(texts), encoder, node)


def load(chunk: Chunk) -> tuple[list[str], pa.LargeStringArray]:
    """A chunk's ids and texts, the texts as the engine takes them: one arrow array (its
    row groups joined) whose buffers it reads."""
    table = chunk.read(["id", "text"])
    return table.column("id").to_pylist(), as_large_strings(table.column("text"))


def split_codes(plan: SplitPlan, ids: list[str]) -> np.ndarray:
    """Each document's split, as its index in SPLITS."""
    return np.fromiter((SPLITS.index(plan.split_of(i)) for i in ids), np.uint8, len(ids))


def chunk_facts(codes: np.ndarray, encoded: Any, encoder: HFEngine) -> dict[str, Any]:
    """What a chunk's receipt says besides its checksums: documents and tokens per split, and
    what the engine did (summed into the artifact's stats)."""
    lengths = encoded.lengths
    stats = {
        s: {"docs": int((codes == k).sum()), "tokens": int(lengths[codes == k].sum())}
        for k, s in enumerate(SPLITS)
    }
    return {"stats": stats, "engine": counts(encoder, encoded)}


def seal(
    work: Path,
    chunk: Chunk,
    plan: SplitPlan,
    ids: list[str],
    encoded: Any,
    encoder: HFEngine,
    node: str | None = None,
) -> dict[str, Any]:
    """Write an encoded chunk's arrays and seal them with a receipt of checksums; returns it.

    The arrays go to a `.partial` folder renamed into place after the receipt is written, so a
    chunk folder either is whole or does not exist. `node`: the Ray node that encoded it (on a
    cluster), summed per node into the artifact's stats."""
    final = chunk_dir(work, chunk)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    codes = split_codes(plan, ids)
    for name, array in (
        ("tokens", encoded.tokens),
        ("lengths", encoded.lengths),
        ("splits", codes),
    ):
        with writing(tmp / f"{name}.npy"):
            np.save(tmp / f"{name}.npy", array)
    maybe_die("tokenize.worker_arrays")
    digests = {p.name: file_checksum(p) for p in sorted(tmp.iterdir())}
    receipt = (
        {"chunk": chunk.name, CHECKSUM: digests}
        | chunk_facts(codes, encoded, encoder)
        | ({"node": node} if node else {})
    )
    atomic_write_json(tmp / "receipt.json", receipt)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    maybe_die("tokenize.worker_sealed")
    return receipt
