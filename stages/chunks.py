"""Tokenize work units: one Parquet row group of a download shard = one chunk.

A chunk is tokenized into token arrays (int32, each document followed by the EOD) sealed with a
receipt of checksums, by the driver or by a Ray task on any node of a cluster (the work folder
is on the shared cache). A sealed chunk is never redone; a damaged one fails its checksum and is.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from stages.encoder import Encoder
from stages.splits import SPLITS, SplitPlan
from util.errors import InputError
from util.faults import maybe_die
from util.files import atomic_write_json, file_sha256, read_json, writing


@dataclass(frozen=True)
class Chunk:
    """One unit of tokenize work: a row group of a Parquet file."""

    file: str
    row_group: int

    @property
    def name(self) -> str:
        return f"{Path(self.file).stem}-rg{self.row_group:05d}"


def list_chunks(files: Iterable[Path]) -> list[Chunk]:
    chunks = []
    for path in files:
        try:
            groups = pq.ParquetFile(path).metadata.num_row_groups
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None
        chunks += [Chunk(str(path), g) for g in range(groups)]
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
    for name, digest in receipt["sha256"].items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            return False
    return True


def chunk_receipt(work: Path, chunk: Chunk) -> dict[str, Any]:
    return read_json(chunk_dir(work, chunk) / "receipt.json")


def tokenize_chunk(work: Path, chunk: Chunk, plan: SplitPlan, encoder: Encoder) -> dict[str, Any]:
    """Tokenize one chunk into `work/chunks/<name>/`, sealed by receipt.json (returned)."""
    final = chunk_dir(work, chunk)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    table = pq.ParquetFile(chunk.file).read_row_group(chunk.row_group, columns=["id", "text"])
    ids = table.column("id").to_pylist()
    encoded = encoder.encode(table.column("text"))
    del table
    codes = np.fromiter((SPLITS.index(plan.split_of(i)) for i in ids), np.uint8, len(ids))
    lengths = encoded.lengths
    stats = {
        s: {"docs": int((codes == k).sum()), "tokens": int(lengths[codes == k].sum())}
        for k, s in enumerate(SPLITS)
    }
    for name, array in (("tokens", encoded.tokens), ("lengths", lengths), ("splits", codes)):
        with writing(tmp / f"{name}.npy"):
            np.save(tmp / f"{name}.npy", array)
    maybe_die("tokenize.worker_arrays")
    digests = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
    receipt = {"chunk": chunk.name, "stats": stats, "engine": encoded.counts, "sha256": digests}
    atomic_write_json(tmp / "receipt.json", receipt)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    maybe_die("tokenize.worker_sealed")
    return receipt
