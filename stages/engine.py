"""Tokenization engines for the tokenize stage: GigaToken (default) and HF `tokenizers`.

`make_engine(tokenizer, eod)` loads either from a tokenizer.json (a folder holding one, the
file, or its JSON text) and `engine.encode(texts)` turns a batch of documents into one flat
int32 token array with `eod` after each document, plus per-document lengths. Workers import
neither transformers nor torch: the caller knows the EOD id and the vocabulary size.

Output is always identical to HF `tokenizers` (`encode_batch(..., add_special_tokens=False)`
plus EOD), whichever engine runs:
- documents holding code points that are unassigned, private-use or surrogates in Python's
  Unicode tables (where GigaToken's newer tables and HF's disagree) are routed to HF;
- a random sample of every batch (`verify`, a fraction of its bytes, at least one piece) is
  encoded by both; on any difference the whole batch is re-encoded by HF;
- a load-time probe on varied text must agree, else `auto` falls back to the HF engine.
Documents over `piece_bytes` are cut where HF gives the same tokens whole and cut (checked
on a window around each cut), so memory is bounded by the piece, not the document.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import xxhash

from stages import engine_text as et
from util.arrow_values import int64s

ENGINES = ("auto", "gigatoken", "hf")
_HF_GROUP_BYTES = 8 << 20  # HF encodes at most this much text at once (its Encodings are big)
_GT_GROUP_BYTES = 256 << 20  # and GigaToken this much
_PROBE = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  \n\n\ttabs\r\nCRLF  \n",
    "numbers 1234567890 3.14159 1,000,000 and 2026-11-23",
    "café naïve résumé Ångström ß Straße ﬁ œ",
    "日本語のテキスト 中文文本 한국어 텍스트",
    "emoji 😀👍🏽 👨‍👩‍👧 flags 🇫🇷 and symbols ∑∫√ ≤ ≥",
    "Arabic العربية Hebrew עברית Hindi हिन्दी Thai ภาษาไทย",
    "e\u0301 combining a\u0308 marks \u200b zero width \ufeff bom \x00 nul \x07",
    "special look-alikes </s> <s> <unk> <|endoftext|> <pad>",
    "code: def f(x):\n    return x ** 2  # comment\n\tif a != b: pass",
    "URL https://example.com/path?q=1&r=2#frag and e-mail someone@example.org",
]


@dataclass
class EncodeStats:
    """What one encode call (or, summed, a whole run) did; goes into the artifact's stats."""

    docs: int = 0
    pieces: int = 0  # documents after cutting the huge ones
    tokens: int = 0  # including one EOD per document
    routed_docs: int = 0  # had unstable code points: encoded by HF
    verified_pieces: int = 0  # encoded by both engines and compared
    mismatched_batches: int = 0  # the sample differed: the whole batch was redone by HF
    fallback_docs: int = 0  # documents whose tokens came from HF in a GigaToken engine

    def __add__(self, other: EncodeStats) -> EncodeStats:
        return EncodeStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class Encoded(NamedTuple):
    tokens: np.ndarray  # int32, flat, EOD after every document
    lengths: np.ndarray  # int64 per document, including its EOD
    stats: EncodeStats


def read_tokenizer_json(tokenizer: str | Path) -> str:
    """tokenizer.json text from a folder holding one, the file, or the JSON text itself."""
    if isinstance(tokenizer, str) and tokenizer.lstrip().startswith("{"):
        return tokenizer
    path = Path(tokenizer)
    return (path / "tokenizer.json" if path.is_dir() else path).read_text(encoding="utf-8")


def set_threads(threads: int | None) -> None:
    """Size the Rust thread pools (GigaToken's and HF's rayon). They are process-wide and
    sized at their first use, so set this before the first encode in the process (one
    engine per process or Ray actor); None leaves them at all cores."""
    if threads is None:
        return
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"


@cache
def reference_tokenizer(tokenizer_json: str) -> Any:
    """HF `tokenizers`' Tokenizer of this tokenizer.json text, built once per process (half a
    second: the tokenize stage's facts and its engine share it)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json)


class HFEngine:
    """HF `tokenizers`: the reference every engine must match, and the fallback engine."""

    name = "hf"

    def __init__(
        self, tokenizer_json: str, eod: int, piece_bytes: int = 1 << 20, window: int = 4096
    ) -> None:
        self.hf = reference_tokenizer(tokenizer_json)
        self.eod, self.piece_bytes, self.window = eod, piece_bytes, window
        self.version = version("tokenizers")
        self.note = ""  # why `auto` fell back to this engine, if it did

    def encode(self, texts: Any) -> Encoded:
        arr = et.as_large_strings(texts)
        pieces, counts = self.cut(arr)
        flat, lengths = self.hf_encode(pieces)
        return self.finish(flat, lengths, counts, EncodeStats(pieces=len(pieces)))

    def cut(self, arr: pa.LargeStringArray) -> tuple[pa.LargeStringArray, np.ndarray]:
        return et.cut_pieces(arr, self.piece_bytes, self.window, self.same_when_cut)

    def same_when_cut(self, left: str, right: str) -> bool:
        """HF's tokens of left + right are those of left followed by those of right."""
        a, b, whole = self.hf.encode_batch_fast(
            [left, right, left + right], add_special_tokens=False
        )
        return a.ids + b.ids == whole.ids

    def hf_encode(self, pieces: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
        """(flat int32 tokens, int64 lengths) of every piece, a bounded group at a time."""
        parts = [self._hf_group(group.to_pylist()) for group in et.groups(pieces, _HF_GROUP_BYTES)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _hf_group(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        if not ids:
            return np.zeros(0, np.int32), lengths
        return np.concatenate([np.asarray(doc, np.int32) for doc in ids]), lengths

    def finish(
        self, flat: np.ndarray, lengths: np.ndarray, counts: np.ndarray, stats: EncodeStats
    ) -> Encoded:
        tokens, doc_lengths = et.with_eod(flat, lengths, counts, self.eod)
        stats.docs, stats.tokens = len(counts), int(tokens.size)
        return Encoded(tokens, doc_lengths, stats)

    def describe(self) -> dict[str, str]:
        """Engine identity for the artifact's key and manifest (and why HF, if it fell back)."""
        return {"engine": self.name, "version": self.version} | (
            {"note": self.note} if self.note else {}
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (HFEngine, (self.hf.to_str(), self.eod, self.piece_bytes, self.window))


class GigaTokenEngine(HFEngine):
    """GigaToken on the zero-copy arrow buffers; HF for routed, sampled and fallback text.

    `parallel=None` lets GigaToken decide (parallel, except in a forked or multiprocessing
    child, where its thread pool could deadlock); False encodes on the calling thread."""

    name = "gigatoken"

    def __init__(
        self,
        tokenizer_json: str,
        eod: int,
        piece_bytes: int = 1 << 20,
        window: int = 4096,
        parallel: bool | None = None,
        verify: float = 0.002,
    ) -> None:
        import gigatoken

        super().__init__(tokenizer_json, eod, piece_bytes, window)
        self.gt = gigatoken.Tokenizer.from_json(tokenizer_json)
        self.parallel, self.verify = parallel, verify
        self.version = f"{version('gigatoken')}+tokenizers-{version('tokenizers')}"
        et.unstable_table()  # 0.2 s of unicodedata, paid at load rather than in a batch
        probe = et.as_large_strings(_PROBE)
        got, want = self.gt_encode(probe), self.hf_encode(probe)
        if not all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)):
            raise RuntimeError("GigaToken and HF tokenizers disagree on the probe text")

    def encode(self, texts: Any) -> Encoded:
        arr = et.as_large_strings(texts)
        pieces, counts = self.cut(arr)
        owner = np.repeat(np.arange(len(counts)), counts)
        stats = EncodeStats(pieces=len(pieces))
        routed = et.unstable_rows(pieces)
        try:
            flat, lengths = self.gt_encode(pieces)
        except Exception:  # GigaToken refused the input (its errors have several types)
            flat = lengths = None
        if flat is None or not self._sample_agrees(pieces, flat, lengths, routed, stats):
            stats.mismatched_batches, stats.fallback_docs = 1, len(counts)
            flat, lengths = self.hf_encode(pieces)
        elif routed.size:
            new_flat, new_lengths = self.hf_encode(pieces.take(int64s(routed)))
            flat, lengths = et.splice(flat, lengths, routed, new_flat, new_lengths)
            stats.routed_docs = stats.fallback_docs = int(np.unique(owner[routed]).size)
        return self.finish(flat, lengths, counts, stats)

    def gt_encode(self, pieces: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
        """GigaToken over the arrow buffers as an awkward string array (no Python strings),
        a bounded group of pieces at a time so its own working memory stays small."""
        parts = [self._gt_group(group) for group in et.groups(pieces, _GT_GROUP_BYTES)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _gt_group(self, pieces: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
        out = self.gt.encode_batch(et.awkward_strings(pieces), parallel=self.parallel).layout
        starts = np.asarray(out.offsets.data)
        flat = np.asarray(out.content.data)[starts[0] : starts[-1]].view(np.int32)
        return flat, np.diff(starts)

    def _sample_agrees(
        self,
        pieces: pa.LargeStringArray,
        flat: np.ndarray,
        lengths: np.ndarray,
        routed: np.ndarray,
        stats: EncodeStats,
    ) -> bool:
        """Encode a random sample of the pieces (`verify` of the bytes, at least one) with
        HF too and compare; routed pieces are left out, HF encodes them anyway."""
        sample = self._sample(pieces, routed)
        stats.verified_pieces = int(sample.size)
        if not sample.size:
            return True
        ref_flat, ref_lengths = self.hf_encode(pieces.take(int64s(sample)))
        return np.array_equal(lengths[sample], ref_lengths) and np.array_equal(
            et.gather(flat, lengths, sample), ref_flat
        )

    def _sample(self, pieces: pa.LargeStringArray, routed: np.ndarray) -> np.ndarray:
        if self.verify <= 0 or not len(pieces):
            return np.zeros(0, np.int64)
        sizes = np.diff(et.buffers(pieces)[0])
        # Seeded by the batch's piece sizes: the same chunk gets the same sample in any run,
        # whichever thread encodes it and in whatever order. Through their hash: seeding with
        # the array itself took 1 ms per thousand pieces.
        rng = np.random.default_rng(xxhash.xxh3_64_intdigest(sizes.tobytes()))
        order = np.setdiff1d(rng.permutation(len(pieces)), routed, assume_unique=True)
        order = rng.permutation(order)
        take = order[np.cumsum(sizes[order]) <= self.verify * sizes.sum()]
        return np.sort(take if take.size else order[:1])

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "verify": str(self.verify)}

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.hf.to_str(), self.eod, self.piece_bytes, self.window, self.parallel)
        return (GigaTokenEngine, (*args, self.verify))


def make_engine(
    tokenizer: str | Path,
    eod: int,
    engine: str = "auto",
    threads: int | None = None,
    verify: float = 0.002,
    piece_bytes: int = 1 << 20,
) -> HFEngine:
    """The engine for `tokenizer` (folder, tokenizer.json path or its JSON text).

    `auto` is GigaToken wherever it loads the tokenizer and passes the probe, else HF;
    `threads` sizes the process's Rust thread pools (1 encodes on the calling thread).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    set_threads(threads)
    text = read_tokenizer_json(tokenizer)
    if engine == "hf":
        return HFEngine(text, eod, piece_bytes)
    try:
        parallel = None if threads is None else threads > 1
        return GigaTokenEngine(text, eod, piece_bytes, parallel=parallel, verify=verify)
    except Exception as e:  # gigatoken raises its own types for configurations it cannot run
        if engine == "gigatoken":
            raise
        fallback = HFEngine(text, eod, piece_bytes)
        fallback.note = f"gigatoken unavailable: {type(e).__name__}: {e}"[:300]
        return fallback
