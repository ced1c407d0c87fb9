"""Tokenize stage: Parquet documents -> Megatron bin/idx per split (train/valid/test).

Work is cut into chunks (one Parquet row group each). A worker loads the tokenizer once and
turns a chunk into token arrays sealed with a receipt of checksums. When every chunk is sealed,
megatron-core's `IndexedDatasetBuilder` writes them in a fixed order into one bin/idx per split,
so the output does not depend on which worker ran what, or on how often the run was killed and
resumed.

The split is per document and deterministic: a hash of the document id picks it. So that a small
`--limit` still gives non-empty valid and test sets, the document with the smallest hash goes to
valid and the next to test when their fraction would otherwise catch none (in datasets of at
least three documents, so that train keeps one).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from stages.base import InputError
from stages.faults import maybe_die
from stages.files import atomic_write_json, file_sha256, read_json, writing

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
    """Read the id column once to find which documents must be forced into valid or test."""
    n_total = n_valid = n_test = 0
    above: list[tuple[float, str]] = []  # the two smallest hashes outside the valid band
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["id"], batch_size=65536):
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
    return _verified(chunk_dir(work, chunk))


def _verified(folder: Path) -> bool:
    receipt = read_json(folder / "receipt.json")
    if not receipt:
        return False
    for name, digest in receipt["sha256"].items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            return False
    return True


def load_tokenizer(spec: str) -> Any:
    """A fast Hugging Face tokenizer from a local folder or a hub id, or a clear InputError."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec)
    except Exception as e:  # transformers raises OSError, ValueError, HTTP errors...
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"tokenizer {spec!r}: cannot load it as a local folder or hub id ({first_line})"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise InputError(
            f"tokenizer {spec!r}: pipe needs a fast (Rust) tokenizer; this one is "
            f"{type(tok).__name__}"
        )
    if tok.eos_token_id is None:
        raise InputError(f"tokenizer {spec!r}: has no EOS token to use as end-of-document")
    return tok


def _indexed_dataset() -> Any:
    """megatron-core's indexed_dataset module, imported without its GPU-less start-up chatter."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets import indexed_dataset
    return indexed_dataset


def backend_json(tok: Any) -> str:
    """The fast tokenizer's Rust pipeline as JSON, for workers to rebuild without transformers."""
    return tok.backend_tokenizer.to_str()


def token_dtype(vocab_size: int) -> str:
    """megatron-core's own choice: uint16 below 65500 ids, else int32."""
    return np.dtype(_indexed_dataset().DType.optimal_dtype(vocab_size)).name


class ChunkTokenizer:
    """Turns chunks into sealed token arrays; built once per worker so the tokenizer loads once.

    A worker gets the Rust tokenizer exactly as `AutoTokenizer` configured it in the driver
    (serialised), so it imports only `tokenizers`, numpy and pyarrow, not transformers, torch or
    megatron-core, whose imports cost seconds per process. Tokens are kept as int32 here;
    megatron-core's builder casts them to its own dtype when the chunks are merged.
    """

    def __init__(self, backend_json: str, eod: int, threads: int = 1) -> None:
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(backend_json)
        self.eod = eod

    def run(self, work: str, chunk: Chunk, plan: SplitPlan) -> dict[str, Any]:
        """Tokenize one chunk into `work/chunks/<name>/`, sealed by receipt.json."""
        final = chunk_dir(Path(work), chunk)
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        table = pq.ParquetFile(chunk.file).read_row_group(chunk.row_group, columns=["id", "text"])
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        del table
        encodings = self.backend.encode_batch_fast(texts, add_special_tokens=False)
        del texts
        lengths = np.fromiter((len(e.ids) + 1 for e in encodings), np.int64, len(encodings))
        tokens = np.empty(int(lengths.sum()), dtype=np.int32)
        ends = np.cumsum(lengths)
        for enc, end, n in zip(encodings, ends, lengths, strict=True):
            tokens[end - n : end - 1] = enc.ids
        tokens[ends - 1] = self.eod
        codes = np.fromiter((SPLITS.index(plan.split_of(i)) for i in ids), np.uint8, len(ids))
        stats = {
            s: {"docs": int((codes == k).sum()), "tokens": int(lengths[codes == k].sum())}
            for k, s in enumerate(SPLITS)
        }
        for name, array in (("tokens", tokens), ("lengths", lengths), ("splits", codes)):
            with writing(tmp / f"{name}.npy"):
                np.save(tmp / f"{name}.npy", array)
        maybe_die("tokenize.worker_arrays")
        digests = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        atomic_write_json(
            tmp / "receipt.json", {"chunk": chunk.name, "stats": stats, "sha256": digests}
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        maybe_die("tokenize.worker_sealed")
        return {"chunk": chunk.name, "stats": stats}


def chunk_stats(work: Path, chunk: Chunk) -> dict[str, dict[str, int]]:
    return read_json(chunk_dir(work, chunk) / "receipt.json")["stats"]


def merge_is_done(work: Path) -> bool:
    """The merge finished (merged.json) and its bin/idx still match their checksums."""
    return bool(read_json(work / "merged.json")) and _verified(work)


def discard_merge(work: Path) -> None:
    """Forget a merge whose outputs fail their checksums: it is redone from the sealed chunks
    (tokenized again where they were already removed)."""
    for name in ("merged.json", "receipt.json"):
        (work / name).unlink(missing_ok=True)
    for path in [*work.glob("*.bin"), *work.glob("*.idx"), *work.glob(".merge-*")]:
        path.unlink()


def merge_chunks(work: Path, chunks: list[Chunk], dtype: str) -> dict[str, dict[str, int]]:
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
    totals = {s: {"docs": 0, "tokens": 0, "chunks": 0} for s in SPLITS}
    builder_class = _indexed_dataset().IndexedDatasetBuilder
    for k, split in enumerate(SPLITS):
        parts = [c for c in chunks if chunk_stats(work, c)[split]["docs"]]
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
                    totals[split][key] += chunk_stats(work, chunk)[split][key]
                totals[split]["chunks"] += 1
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
