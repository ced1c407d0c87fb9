"""Write tokenized chunks, in corpus order, into one Megatron bin/idx per split.

megatron-core's own `IndexedDatasetBuilder` writes every document, so the files are exactly
what Megatron reads. Each chunk's tokens are written once, straight into its splits' growing
`.bin` files, and the chunk is then journaled (`merged/<chunk>.json`: its documents' lengths
per split, where its bytes sit in each `.bin`, and their xxh3 checksum). On resume the journal
is checked against those bytes: every chunk that still matches is carried into the new files
without being tokenized again (one read and one write); the rest are redone. The output does
not depend on which worker tokenized which chunk, or on how often the run was killed.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from stages.chunks import Chunk, chunk_dir, chunk_receipt, verified
from stages.indexed import indexed_dataset
from stages.splits import SPLITS
from util.faults import maybe_die
from util.files import (
    CHECKSUM,
    atomic_write_json,
    atomic_write_text,
    file_checksum,
    read_json,
    remember_digests,
    writing,
)

JOURNAL = "merged"  # the folder of chunk journal entries, inside the work folder
WRITE_BUFFER = 8 << 20


@dataclass(frozen=True)
class Run:
    """Consecutive documents of one split: their tokens (contiguous) and lengths."""

    tokens: np.ndarray
    lengths: np.ndarray


def split_runs(tokens: np.ndarray, lengths: np.ndarray, codes: np.ndarray) -> dict[str, list[Run]]:
    """A chunk's documents (flat tokens, lengths, split code of each) as runs per split, in
    order, without copying tokens: a split's documents are its runs, concatenated."""
    runs: dict[str, list[Run]] = {s: [] for s in SPLITS}
    if not len(codes):
        return runs
    ends = np.cumsum(lengths)
    cuts = np.flatnonzero(np.diff(codes)) + 1
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(codes)], strict=True):
        start = int(ends[a - 1]) if a else 0
        runs[SPLITS[codes[a]]].append(Run(tokens[start : int(ends[b - 1])], lengths[a:b]))
    return runs


def merge_is_done(work: Path) -> bool:
    """The merge finished (merged.json) and its bin/idx still match their checksums."""
    return bool(read_json(work / "merged.json")) and verified(work)


def discard_merge(work: Path) -> None:
    """Forget a merge whose outputs fail their checksums: it is redone from scratch."""
    for name in ("merged.json", "receipt.json"):
        (work / name).unlink(missing_ok=True)
    for path in [*work.glob("*.bin"), *work.glob("*.idx"), *work.glob(".merge-*")]:
        path.unlink()
    shutil.rmtree(work / JOURNAL, ignore_errors=True)


def drop_resume_files(work: Path) -> None:
    """What only a resume could use: the journal, sealed chunks, a killed run's partial files."""
    for name in (JOURNAL, "chunks"):
        shutil.rmtree(work / name, ignore_errors=True)
    for path in work.glob(".merge-*.old"):
        path.unlink()


def engine_counts(receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """What the engine did over all chunks (documents checked against, or sent to, the
    reference tokenizer), summed from the chunks' receipts."""
    total: dict[str, Any] = {}
    for receipt in receipts:
        for key, n in receipt.get("engine", {}).items():
            if isinstance(n, int):
                total[key] = total.get(key, 0) + n
            else:  # which engine ran (the same for every chunk of a run)
                total[key] = n
    return total


class Merger:
    """One IndexedDatasetBuilder per split, fed chunk after chunk in corpus order.

    Built over a work folder, it first recovers what a killed run merged (`kept`), moving
    that run's partial files aside. A split with no documents gets no files at all, because
    Megatron cannot open an empty dataset.
    """

    def __init__(self, work: Path, chunks: list[Chunk], dtype: Callable[[], str]) -> None:
        self.work, self.dtype = work, dtype
        self.builders: dict[str, Any] = {}
        self.digests = {s: xxhash.xxh3_128() for s in SPLITS}  # of the whole files, as written
        self.ends = dict.fromkeys(SPLITS, 0)
        self.receipts: list[dict[str, Any]] = []
        self.kept = self._recover(chunks)
        (work / JOURNAL).mkdir(parents=True, exist_ok=True)

    def add(self, chunk: Chunk, runs: dict[str, list[Run]], receipt: dict[str, Any]) -> None:
        """Write a chunk's runs and journal it; `receipt` (stats, engine counts) goes along."""
        entry: dict[str, Any] = {"chunk": chunk.name, "splits": {}} | receipt
        for split, split_runs_ in runs.items():
            if not split_runs_:
                continue
            builder, part = self._builder(split), xxhash.xxh3_128()
            start, lengths = self.ends[split], []
            with writing(self._tmp(split, "bin")):
                for run in split_runs_:
                    tokens = run.tokens.astype(builder.dtype, copy=False)  # as the file holds them
                    run_lengths = run.lengths.tolist()
                    _add_run(builder, tokens, run_lengths)
                    lengths += run_lengths
                    part.update(tokens)
                    self.digests[split].update(tokens)
                    self.ends[split] += tokens.nbytes
                builder.data_file.flush()  # every byte the journal names is in the file
            entry["splits"][split] = {
                "start": start,
                "end": self.ends[split],
                "xxh3": part.hexdigest(),
                "lengths": lengths,
            }
        # compact: an entry lists every document's length
        atomic_write_text(self.work / JOURNAL / f"{chunk.name}.json", json.dumps(entry))
        self.receipts.append(receipt)
        maybe_die("tokenize.merge_chunk")

    def carry(self, chunk: Chunk) -> dict[str, Any]:
        """Write a chunk a killed run merged, from that run's files; returns its receipt."""
        entry = self.kept.pop(chunk.name)
        runs = {s: [] for s in SPLITS}
        for split, where in entry["splits"].items():
            old = np.memmap(self._old(split), self.token_type(), "r")
            size = old.itemsize
            tokens = old[where["start"] // size : where["end"] // size]
            runs[split].append(Run(tokens, np.asarray(where["lengths"], np.int64)))
        receipt = {k: v for k, v in entry.items() if k not in ("chunk", "splits")}
        self.add(chunk, runs, receipt)
        return receipt

    def finish(self) -> dict[str, Any]:
        totals: dict[str, Any] = {s: {"docs": 0, "tokens": 0} for s in SPLITS}
        for receipt in self.receipts:
            for split in SPLITS:
                for key in ("docs", "tokens"):
                    totals[split][key] += receipt["stats"][split][key]
        for split, builder in self.builders.items():
            with writing(self._tmp(split, "idx")):
                builder.finalize(str(self._tmp(split, "idx")))
            for ext in ("bin", "idx"):
                self._tmp(split, ext).replace(self.work / f"{split}.{ext}")
            maybe_die("tokenize.merge_split")
        totals["engine"] = engine_counts(self.receipts)
        digests = {f"{s}.bin": self.digests[s].hexdigest() for s in self.builders}
        digests |= {f"{s}.idx": file_checksum(self.work / f"{s}.idx") for s in self.builders}
        remember_digests(self.work, digests)
        atomic_write_json(self.work / "receipt.json", {CHECKSUM: digests})
        atomic_write_json(self.work / "merged.json", {"stats": totals})
        maybe_die("tokenize.merged")
        drop_resume_files(self.work)
        return totals

    def token_type(self) -> type:
        return np.dtype(self.dtype()).type

    def _recover(self, chunks: list[Chunk]) -> dict[str, dict[str, Any]]:
        """Journal entries of a killed run whose bytes still match, by chunk name; that run's
        partial files are kept aside (`.old`) until they are carried over. (A run killed again
        before it carried them all over redoes those it had not.)"""
        entries = [read_json(self.work / JOURNAL / f"{c.name}.json") for c in chunks]
        shutil.rmtree(self.work / JOURNAL, ignore_errors=True)
        for split in SPLITS:
            if self._tmp(split, "bin").exists():
                self._tmp(split, "bin").replace(self._old(split))
        for path in self.work.glob(".merge-*.idx"):
            path.unlink()
        kept = {e["chunk"]: e for e in entries if e and self._intact(e)}
        if not kept:
            for path in self.work.glob(".merge-*.old"):
                path.unlink()
        return kept

    def _intact(self, entry: dict[str, Any]) -> bool:
        for split, where in entry["splits"].items():
            path = self._old(split)
            if not path.is_file() or path.stat().st_size < where["end"]:
                return False
            with open(path, "rb") as f:
                f.seek(where["start"])
                digest = xxhash.xxh3_128(f.read(where["end"] - where["start"]))
            if digest.hexdigest() != where["xxh3"]:
                return False
        return True

    def _builder(self, split: str) -> Any:
        if split not in self.builders:
            builder_class = indexed_dataset().IndexedDatasetBuilder
            path = self._tmp(split, "bin")
            with writing(path):
                builder = builder_class(str(path), self.token_type())
            # The builder makes a write() per call, one per run of documents, and the valid
            # and test runs are mostly single documents; through the file's default 4 KiB
            # buffer each is a system call zeroing the part of a page it does not fill. An
            # 8 MiB buffer makes them memory copies.
            builder.data_file = io.BufferedWriter(builder.data_file.detach(), WRITE_BUFFER)
            self.builders[split] = builder
        return self.builders[split]

    def _tmp(self, split: str, ext: str) -> Path:
        return self.work / f".merge-{split}.{ext}"

    def _old(self, split: str) -> Path:
        return self.work / f".merge-{split}.old"


def _add_run(builder: Any, tokens: np.ndarray, lengths: list[int]) -> None:
    """A run of documents through one call of the builder's add_document: one copy and one
    write for the run, not a Python call per document (150,000 of them at x16, which on many
    cores made the writer thread the wall). add_document records the run as one document of
    `len(lengths)` sequences; its last document-index entry is then replaced by one entry per
    document, as per-document calls leave them (and as the builder's own add_index extends
    them). Tested byte-identical with a call per document."""
    builder.add_document(tokens, lengths)
    indices, end = builder.document_indices, len(builder.sequence_lengths)
    indices.pop()
    indices.extend(range(end - len(lengths) + 1, end + 1))


def sealed_runs(work: Path, chunk: Chunk) -> tuple[dict[str, list[Run]], dict[str, Any]]:
    """A chunk a Ray worker sealed (stages/chunks.py): its runs per split and its receipt."""
    folder = chunk_dir(work, chunk)
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")
    runs = split_runs(tokens, np.load(folder / "lengths.npy"), np.load(folder / "splits.npy"))
    receipt = chunk_receipt(work, chunk)
    return runs, {k: receipt[k] for k in ("stats", "engine")}


def merge_sealed(merger: Merger, chunk: Chunk) -> dict[str, Any]:
    """Merge a chunk a Ray worker sealed, or one a killed run merged; returns its receipt. A
    sealed chunk's folder is dropped once the chunk is journaled."""
    if chunk.name in merger.kept:
        return merger.carry(chunk)
    runs, receipt = sealed_runs(merger.work, chunk)
    merger.add(chunk, runs, receipt)
    shutil.rmtree(chunk_dir(merger.work, chunk))
    return receipt
