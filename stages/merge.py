"""Merge sealed chunks, in a fixed order, into one Megatron bin/idx per split.

megatron-core's own `IndexedDatasetBuilder` writes every document, so the files are exactly what
Megatron reads; the output does not depend on which worker ran which chunk, or on how often the
run was killed and resumed.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stages.chunks import Chunk, chunk_dir, chunk_receipt, verified
from stages.splits import SPLITS
from util.faults import maybe_die
from util.files import atomic_write_json, file_sha256, read_json, remember_digests, writing


def indexed_dataset() -> Any:
    """megatron-core's indexed_dataset module, imported without its GPU-less start-up chatter."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets import indexed_dataset as module
    warnings.filterwarnings("ignore", message="Could not determine rank")
    return module


def token_dtype(vocab_size: int) -> str:
    """megatron-core's own choice: uint16 below 65500 ids, else int32."""
    return np.dtype(indexed_dataset().DType.optimal_dtype(vocab_size)).name


def merge_is_done(work: Path) -> bool:
    """The merge finished (merged.json) and its bin/idx still match their checksums."""
    return bool(read_json(work / "merged.json")) and verified(work)


def discard_merge(work: Path) -> None:
    """Forget a merge whose outputs fail their checksums: it is redone from the sealed chunks
    (tokenized again where they were already removed)."""
    for name in ("merged.json", "receipt.json"):
        (work / name).unlink(missing_ok=True)
    for path in [*work.glob("*.bin"), *work.glob("*.idx"), *work.glob(".merge-*")]:
        path.unlink()


def engine_counts(receipts: list[dict[str, Any]]) -> dict[str, int]:
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


def merge_chunks(work: Path, chunks: list[Chunk], dtype: str) -> dict[str, Any]:
    """Write the sealed chunks, in order, through megatron-core's IndexedDatasetBuilder into
    `work/<split>.bin/.idx`; then drop the chunks (see Merger)."""
    if merge_is_done(work):
        shutil.rmtree(work / "chunks", ignore_errors=True)  # a kill may have cut this short
        return read_json(work / "merged.json")["stats"]
    merger = Merger(work, dtype)
    for chunk in chunks:
        merger.add(chunk)
    return merger.finish()


class Merger:
    """Appends sealed chunks, in corpus order, to one IndexedDatasetBuilder per split, one
    document at a time, so that merging can run while later chunks are still being encoded.

    A split with no documents gets no files at all, because Megatron cannot open an empty
    dataset. A merge killed half-way is redone from the start (the chunks are kept until
    merged.json is written), so its output never mixes two attempts.
    """

    def __init__(self, work: Path, dtype: str) -> None:
        warnings.filterwarnings("ignore", message="Could not determine rank")
        self.work, self.dtype = work, np.dtype(dtype).type
        self.builder_class = indexed_dataset().IndexedDatasetBuilder
        self.builders: dict[str, Any] = {}
        self.totals: dict[str, Any] = {s: {"docs": 0, "tokens": 0} for s in SPLITS}
        self.receipts: list[dict[str, Any]] = []

    def add(self, chunk: Chunk) -> None:
        receipt = chunk_receipt(self.work, chunk)
        folder = chunk_dir(self.work, chunk)
        tokens = np.load(folder / "tokens.npy", mmap_mode="r")
        lengths = np.load(folder / "lengths.npy")
        codes = np.load(folder / "splits.npy")
        starts = np.cumsum(lengths) - lengths
        for k, split in enumerate(SPLITS):
            if not receipt["stats"][split]["docs"]:
                continue
            builder = self._builder(split)
            with writing(self._tmp(split, "bin")):
                for start, n in zip(starts[codes == k], lengths[codes == k], strict=True):
                    builder.add_document(tokens[start : start + n], [int(n)])
            for key in ("docs", "tokens"):
                self.totals[split][key] += receipt["stats"][split][key]
        self.receipts.append(receipt)
        maybe_die("tokenize.merge_chunk")

    def finish(self) -> dict[str, Any]:
        for split, builder in self.builders.items():
            with writing(self._tmp(split, "idx")):
                builder.finalize(str(self._tmp(split, "idx")))
            for ext in ("bin", "idx"):
                self._tmp(split, ext).replace(self.work / f"{split}.{ext}")
            maybe_die("tokenize.merge_split")
        self.totals["engine"] = engine_counts(self.receipts)
        outputs = sorted(self.work.glob("*.bin")) + sorted(self.work.glob("*.idx"))
        digests = {p.name: file_sha256(p) for p in outputs}
        remember_digests(self.work, digests)
        atomic_write_json(self.work / "receipt.json", {"sha256": digests})
        atomic_write_json(self.work / "merged.json", {"stats": self.totals})
        maybe_die("tokenize.merged")
        shutil.rmtree(self.work / "chunks", ignore_errors=True)
        return self.totals

    def _builder(self, split: str) -> Any:
        if split not in self.builders:
            with writing(self._tmp(split, "bin")):
                self.builders[split] = self.builder_class(str(self._tmp(split, "bin")), self.dtype)
        return self.builders[split]

    def _tmp(self, split: str, ext: str) -> Path:
        return self.work / f".merge-{split}.{ext}"
