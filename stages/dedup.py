"""Exact and fuzzy deduplication on CPU, as NeMo Curator stages.

Curator 1.x ships both dedups for GPU only (they import cudf). Here each is two stages: a
per-batch stage that runs in parallel on the executor (hash the normalised text; MinHash the
word shingles with datasketch) and a global stage that sees every surviving document's hash or
signature at once, in corpus order (shard, row), and marks all but the first of each group.
The global stages receive one DocumentBatch without text, so they stay small in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasketch import LeanMinHash, MinHash, MinHashLSH
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch

SEQ = "_seq"  # position of the document in the corpus: the deterministic "first"
EXACT = "_exact"  # hex digest of the normalised text
SIGNATURE = "_minhash"  # uint32 MinHash values as bytes
DROP = "_drop"  # name of the dedup step that removes the document, or ""


def normalize_text(text: str) -> str:
    """Text up to whitespace: copies that differ only in spacing or line breaks are equal."""
    return " ".join(text.split())


def shingles(text: str, n: int) -> list[bytes]:
    """Lower-cased word n-grams; a document shorter than n words is one shingle."""
    words = text.lower().split()
    if len(words) <= n:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def _with(batch: DocumentBatch, df: pd.DataFrame) -> DocumentBatch:
    return DocumentBatch(
        dataset_name=batch.dataset_name,
        data=df,
        _metadata=batch._metadata,
        _stage_perf=batch._stage_perf,
    )


@dataclass
class ExactHash(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Adds a 128-bit blake2b digest of each document's normalised text (parallel part)."""

    text_field: str = "text"
    name: str = "exact_hash"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [EXACT]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas().copy()
        df[EXACT] = [
            hashlib.blake2b(normalize_text(t).encode(), digest_size=16).hexdigest()
            for t in df[self.text_field]
        ]
        return _with(batch, df)


@dataclass
class MinHashSignature(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Adds each document's datasketch MinHash of its word n-grams (parallel part)."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 42
    text_field: str = "text"
    name: str = "minhash"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [SIGNATURE]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas().copy()
        # One MinHash object re-used: its permutations are the costly part to build.
        mh = MinHash(num_perm=self.num_perm, seed=self.seed)
        signatures = []
        for text in df[self.text_field]:
            mh.clear()
            mh.update_batch(shingles(text, self.ngram))
            signatures.append(mh.hashvalues.astype(np.uint32).tobytes())
        df[SIGNATURE] = signatures
        return _with(batch, df)


@dataclass
class ExactDuplicates(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Global part: marks every document whose digest was seen earlier in corpus order."""

    name: str = "exact_dedup"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [SEQ, EXACT, DROP]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [DROP]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas().sort_values(SEQ, kind="stable").copy()
        live = df[DROP] == ""
        dupes = live & df[EXACT].where(live).duplicated(keep="first")
        df.loc[dupes, DROP] = self.name
        return _with(batch, df)


@dataclass
class FuzzyDuplicates(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Global part: MinHash LSH (datasketch) at a Jaccard threshold, first document kept.

    Documents are visited in corpus order; one is a near-duplicate when LSH finds an already
    kept document whose estimated Jaccard similarity is at least `threshold` (LSH candidates
    are verified, so banding false positives are not removed). Only kept documents enter the
    index, so every removed document is similar to a kept one, not merely to another removed one.
    """

    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 42
    name: str = "fuzzy_dedup"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [SEQ, SIGNATURE, DROP]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [DROP]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas().sort_values(SEQ, kind="stable").copy()
        lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        kept: dict[int, LeanMinHash] = {}
        scheme = MinHash(num_perm=self.num_perm, seed=self.seed).scheme  # as MinHashSignature's
        drop = df[DROP].tolist()
        for i, (seq, sig) in enumerate(zip(df[SEQ], df[SIGNATURE], strict=True)):
            if drop[i]:
                continue
            values = np.frombuffer(sig, dtype=np.uint32)
            mh = LeanMinHash(seed=self.seed, hashvalues=values, scheme=scheme)
            if any(kept[c].jaccard(mh) >= self.threshold for c in lsh.query(mh)):
                drop[i] = self.name
                continue
            lsh.insert(int(seq), mh, check_duplication=False)
            kept[int(seq)] = mh
        df[DROP] = drop
        return _with(batch, df)
