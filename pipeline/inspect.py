"""`pipe inspect`: what a tokenize artifact (or any bin/idx prefix) holds, decoded back to text.

So that a user sees that what goes into training is what they meant: document and token
counts, the length distribution, and documents decoded with the tokenizer they were made with
(the EOD shown where it stands).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache import Cache
from util.errors import PipeError
from util.files import read_json


@dataclass(frozen=True)
class Target:
    """A bin/idx prefix and the tokenizer to decode it with (None: ids only)."""

    prefix: Path
    tokenizer: str | None
    eod_id: int | None


def resolve(what: str, split: str, cache_root: Path) -> Target:
    """A cache key (prefix) of a tokenize artifact, or a path to a bin/idx prefix."""
    path = Path(what).expanduser()
    if Path(f"{path}.idx").is_file() or path.suffix in (".bin", ".idx"):
        prefix = path.with_suffix("") if path.suffix in (".bin", ".idx") else path
        return _with_tokenizer(prefix, prefix.parent)
    art = Cache.existing(cache_root).find(what)
    if art.stage != "tokenize":
        raise PipeError(f"{art.stage} {art.key}: pipe inspect reads tokenize artifacts")
    return _with_tokenizer(art.path / split, art.path)


def _with_tokenizer(prefix: Path, folder: Path) -> Target:
    for name in ("bin", "idx"):
        if not Path(f"{prefix}.{name}").is_file():
            raise PipeError(f"{prefix}.{name}: no such file (is the split empty?)")
    tok = (read_json(folder / "manifest.json") or {}).get("stats", {}).get("tokenizer", {})
    return Target(prefix, tok.get("path"), tok.get("eod_id"))


def inspect(target: Target, n: int, seed: int = 0) -> dict[str, Any]:
    """Counts, length percentiles and `n` decoded documents (the first, then random ones)."""
    data, lengths = open_dataset(target.prefix)
    if not len(lengths):
        raise PipeError(f"{target.prefix}: holds no documents")
    picks = [
        0,
        *sorted(random.Random(seed).sample(range(1, len(lengths)), min(n - 1, len(lengths) - 1))),
    ]
    decode = _decoder(target)
    docs = []
    for i in picks[: max(n, 0)]:
        ids = data[i].tolist()
        docs.append(
            {
                "index": i,
                "tokens": len(ids),
                "ends_with_eod": ids[-1] == target.eod_id,
                "text": decode(ids),
            }
        )
    pct = np.percentile(lengths, [50, 99]) if len(lengths) else [0, 0]
    return {
        "prefix": str(target.prefix),
        "documents": len(lengths),
        "tokens": int(lengths.sum()),
        "dtype": str(np.dtype(data.index.dtype)),
        "length": {
            "min": int(lengths.min()),
            "median": float(pct[0]),
            "p99": float(pct[1]),
            "max": int(lengths.max()),
        },
        "tokenizer": target.tokenizer,
        "docs": docs,
    }


def open_dataset(prefix: Path) -> tuple[Any, np.ndarray]:
    """megatron-core's IndexedDataset of a bin/idx prefix and its document lengths in tokens,
    refused in one line when the idx is unreadable or the bin's size does not match it."""
    from stages.indexed import indexed_dataset  # megatron-core, imported without its chatter

    try:
        data = indexed_dataset().IndexedDataset(str(prefix))
        lengths = np.asarray(data.sequence_lengths, np.int64)
    except Exception as e:  # megatron raises AssertionError/ValueError on a damaged idx
        message = f"{prefix}: not a readable bin/idx ({type(e).__name__}: {e})"
        raise PipeError(message) from None
    if lengths.sum() * data.index.dtype_size != Path(f"{prefix}.bin").stat().st_size:
        raise PipeError(f"{prefix}.bin: its size does not match its idx (damaged)")
    return data, lengths


def _decoder(target: Target) -> Any:
    """ids -> text with special tokens (the EOD) kept visible; ids alone without a tokenizer."""
    if not target.tokenizer or not (Path(target.tokenizer) / "tokenizer.json").is_file():
        return lambda ids: " ".join(map(str, ids))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(target.tokenizer) / "tokenizer.json"))
    return lambda ids: tok.decode(ids, skip_special_tokens=False)
