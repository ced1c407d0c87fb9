"""Which split (train, valid, test) each document goes to: by a hash of its id.

The split is per document and deterministic. So that a small `--limit` still gives non-empty
valid and test sets, the document with the smallest hash goes to valid and the next to test
when their fraction would otherwise catch none (in datasets of at least three documents, so
that train keeps one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

SPLITS = ("train", "valid", "test")
_HASH_SCALE = float(2**64)


def split_hash(doc_id: str) -> float:
    """A document's place in [0, 1): stable across runs, machines and Python versions."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, person=b"pipe-split")
    return int.from_bytes(digest.digest(), "big") / _HASH_SCALE


@dataclass(frozen=True)
class SplitPlan:
    """Where each document goes: by hash band, plus at most one forced document per small split."""

    valid: float
    test: float
    forced: dict[str, str] = field(default_factory=dict)  # doc id -> split

    def split_of(self, doc_id: str) -> str:
        forced = self.forced.get(doc_id)
        if forced:
            return forced
        h = split_hash(doc_id)
        if h < self.valid:
            return "valid"
        if h < self.valid + self.test:
            return "test"
        return "train"


def plan_splits(files: Iterable[Path], valid: float, test: float) -> SplitPlan:
    """Read ids to find which documents must be forced into valid or test. Once a valid and a
    test document have been seen nothing can be forced, so a large dataset stops reading after
    its first batch; only a small one is read to the end."""
    n_total = n_valid = n_test = 0
    above: list[tuple[float, str]] = []  # the two smallest hashes outside the valid band
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["id"], batch_size=4096):
            if (valid == 0 or n_valid) and (test == 0 or n_test):
                return SplitPlan(valid, test)
            for doc_id in batch.column(0).to_pylist():
                h = split_hash(doc_id)
                n_total += 1
                if h < valid:
                    n_valid += 1
                    continue
                n_test += h < valid + test
                if len(above) < 2 or h < above[-1][0]:
                    above = sorted([*above, (h, doc_id)])[:2]
    forced: dict[str, str] = {}
    if n_total < 3:  # too few to give away any: train keeps them all
        return SplitPlan(valid, test, forced)
    if valid > 0 and n_valid == 0 and above:
        h, doc_id = above.pop(0)
        forced[doc_id] = "valid"
        n_test -= h < valid + test
    if test > 0 and n_test == 0 and above:
        forced[above.pop(0)[1]] = "test"
    return SplitPlan(valid, test, forced)
