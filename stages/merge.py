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
from util.files import atomic_write_json, file_sha256, read_json, writing


def indexed_dataset() -> Any:
    """megatron-core's indexed_dataset module, imported without its GPU-less start-up chatter."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets import indexed_dataset as module
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
    `work/<split>.bin/.idx`, one document at a time; then drop the chunks.

    Returns docs and tokens per split; a split with no documents gets no files at all, because
    Megatron cannot open an empty dataset. A merge killed half-way is redone from the start
    (the chunks are kept until merged.json is written), so its output never mixes two attempts.
    """
    if merge_is_done(work):
        shutil.rmtree(work / "chunks", ignore_errors=True)  # a kill may have cut this short
        return read_json(work / "merged.json")["stats"]
    warnings.filterwarnings("ignore", message="Could not determine rank")
    totals: dict[str, Any] = {s: {"docs": 0, "tokens": 0} for s in SPLITS}
    receipts = {c: chunk_receipt(work, c) for c in chunks}
    totals["engine"] = engine_counts(list(receipts.values()))
    builder_class = indexed_dataset().IndexedDatasetBuilder
    for k, split in enumerate(SPLITS):
        parts = [c for c in chunks if receipts[c]["stats"][split]["docs"]]
        if not parts:
            continue
        tmp = work / f".merge-{split}"
        with writing(Path(f"{tmp}.bin")):
            builder = builder_class(f"{tmp}.bin", np.dtype(dtype).type)
            for chunk in parts:
                folder = chunk_dir(work, chunk)
                tokens = np.load(folder / "tokens.npy", mmap_mode="r")
                lengths = np.load(folder / "lengths.npy")
                codes = np.load(folder / "splits.npy")
                starts = np.cumsum(lengths) - lengths
                for start, n in zip(starts[codes == k], lengths[codes == k], strict=True):
                    builder.add_document(tokens[start : start + n], [int(n)])
                maybe_die("tokenize.merge_chunk")
                for key in ("docs", "tokens"):
                    totals[split][key] += receipts[chunk]["stats"][split][key]
            builder.finalize(f"{tmp}.idx")
        for ext in ("bin", "idx"):
            Path(f"{tmp}.{ext}").replace(work / f"{split}.{ext}")
        maybe_die("tokenize.merge_split")
    digests = {
        p.name: file_sha256(p) for p in sorted(work.glob("*.bin")) + sorted(work.glob("*.idx"))
    }
    atomic_write_json(work / "receipt.json", {"sha256": digests})
    atomic_write_json(work / "merged.json", {"stats": totals})
    maybe_die("tokenize.merged")
    shutil.rmtree(work / "chunks", ignore_errors=True)
    return totals
