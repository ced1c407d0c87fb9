"""Array plumbing for the tokenization engine: documents as one UTF-8 buffer plus offsets.

Everything here works on a pyarrow `large_string` array's two buffers, so a batch is never
turned into Python strings except where Hugging Face `tokenizers` needs them (routed, sampled
or fallback text). Huge documents are cut into pieces by adding offsets into the same buffer
(no copy); pieces are tokenized like documents and their tokens concatenated again.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from util.arrow_values import strings, strings_from_buffers

# A cut goes right after a newline before printable ASCII, or before a space between ASCII
# letters: places where byte-level pre-tokenizers split anyway. Each cut is still checked.
_CUT = re.compile(rb"(?<=\n)(?=[!-~])|(?<=[A-Za-z])(?= [A-Za-z])")
_UNSTABLE_CATEGORIES = ("Cn", "Co", "Cs")  # unassigned, private use, surrogate


def as_large_strings(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """One contiguous large_string array (nulls as empty text) from a list or arrow data."""
    if isinstance(texts, pa.ChunkedArray):  # cast first: 32-bit offsets overflow past 2 GiB
        texts = texts.cast(pa.large_string()).combine_chunks()
    if not isinstance(texts, pa.Array):
        return strings(texts)
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    if texts.null_count:
        texts = pc.coalesce(texts, strings([""])[0])
    return texts


def buffers(arr: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets into data, data): zero-copy numpy views of the array's buffers."""
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)


def awkward_strings(arr: pa.LargeStringArray) -> Any:
    """The same buffers as an awkward string array, GigaToken's fast (parallel) input."""
    import awkward as ak

    offsets, data = buffers(arr)
    chars = ak.contents.NumpyArray(data, parameters={"__array__": "char"})
    strings = ak.contents.ListOffsetArray(
        ak.index.Index64(offsets), chars, parameters={"__array__": "string"}
    )
    return ak.Array(strings)


def groups(arr: pa.LargeStringArray, max_bytes: int) -> list[pa.LargeStringArray]:
    """Consecutive slices of about `max_bytes` of text each (at least one, maybe empty)."""
    offsets, _ = buffers(arr)
    marks = np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], max_bytes)[1:])
    bounds = np.unique(np.concatenate([[0], marks, [len(arr)]]))
    if bounds.size == 1:
        return [arr]
    return [arr.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


@cache
def unstable_table() -> np.ndarray:
    """Code points whose tokenization may depend on the engine's Unicode tables.

    GigaToken's tables are newer than those of HF `tokenizers`' regex engine: it calls
    letters what HF still sees as unassigned (seen: CJK Extension J, U+323B0.., next to
    ASCII). Computed from `unicodedata` over the whole range; every other code point is
    checked identical in tests (tests/test_engine.py, all assigned code points in context).
    """
    cats = (unicodedata.category(chr(c)) in _UNSTABLE_CATEGORIES for c in range(0x110000))
    return np.fromiter(cats, bool, 0x110000)


def unstable_rows(arr: pa.LargeStringArray, block: int = 4096, window: int = 1 << 24) -> np.ndarray:
    """Indices of rows holding any unstable code point. The text is first scanned for the
    `block`s holding a multi-byte character at all (their largest byte: one numpy pass, several
    times faster than arrow's per-row ASCII check); only runs of such blocks are decoded, a
    `window` at a time so that memory stays bounded."""
    offsets, data = buffers(arr)
    lo, hi = int(offsets[0]), int(offsets[-1])
    whole = (hi - lo) // block * block
    wide = np.flatnonzero(data[lo : lo + whole].reshape(-1, block).max(axis=1) >= 0xC0)
    starts, ends = lo + wide * block, lo + (wide + 1) * block
    if whole < hi - lo:  # the last, partial block
        starts, ends = np.append(starts, lo + whole), np.append(ends, hi)
    if not starts.size:
        return np.zeros(0, np.int64)
    cuts = np.flatnonzero(starts[1:] != ends[:-1]) + 1  # runs of adjacent blocks
    hits = [
        _unstable_bytes(data, a, min(a + window, int(end)))
        for start, end in zip(starts[np.r_[0, cuts]], ends[np.r_[cuts - 1, -1]], strict=True)
        for a in range(int(start), int(end), window)
    ]
    return np.unique(np.searchsorted(offsets, np.concatenate(hits), "right") - 1)


def _unstable_bytes(data: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Positions in [lo, hi) of the first bytes of unstable characters."""
    window = np.concatenate([data[lo : hi + 3], np.zeros(3, np.uint8)])
    pos = np.flatnonzero(window[: hi - lo] >= 0xC0)
    b0 = window[pos].astype(np.int32)
    b1, b2, b3 = (window[pos + k].astype(np.int32) & 63 for k in (1, 2, 3))
    cp = np.where(
        b0 < 0xE0,
        ((b0 & 31) << 6) | b1,
        np.where(
            b0 < 0xF0,
            ((b0 & 15) << 12) | (b1 << 6) | b2,
            ((b0 & 7) << 18) | (b1 << 12) | (b2 << 6) | b3,
        ),
    )
    return lo + pos[unstable_table()[np.minimum(cp, 0x10FFFF)]]


def _char_start(data: np.ndarray, pos: int, step: int) -> int:
    """Move `pos` by `step` until it sits on the first byte of a UTF-8 character."""
    while 0 < pos < data.size and data[pos] & 0xC0 == 0x80:
        pos += step
    return pos


def _cut_is_safe(
    data: np.ndarray, cut: int, lo: int, hi: int, window: int, check: Callable
) -> bool:
    """The reference tokenizer gives the same tokens for a window around `cut` whole and cut."""
    a = _char_start(data, max(lo, cut - window), 1)
    b = _char_start(data, min(hi, cut + window), -1)
    left, right = bytes(data[a:cut]).decode(), bytes(data[cut:b]).decode()
    return check(left, right)


def find_cuts(
    data: np.ndarray, lo: int, hi: int, piece: int, window: int, check: Callable, tries: int = 64
) -> list[int]:
    """Byte offsets in (lo, hi) that cut one document into pieces of `piece`/2 bytes or more
    (the first candidate after that), each accepted by `check(left, right)` on a window; if
    `tries` candidates fail, the rest stays whole (memory grows, tokens stay exact)."""
    view, cuts, start = memoryview(data), [], lo
    while hi - start > piece:
        pos, found = start + piece // 2, None
        for _ in range(tries):
            m = _CUT.search(view, pos, hi)
            if m is None:
                break
            if _cut_is_safe(data, m.start(), lo, hi, window, check):
                found = m.start()
                break
            pos = m.start() + 1
        if found is None:
            break
        cuts.append(found)
        start = found
    return cuts


def cut_pieces(
    arr: pa.LargeStringArray, piece: int, window: int, check: Callable
) -> tuple[pa.LargeStringArray, np.ndarray]:
    """Documents longer than `piece` bytes cut into pieces; returns (pieces, pieces per doc)."""
    offsets, data = buffers(arr)
    counts = np.ones(len(arr), np.int64)
    big = np.flatnonzero(np.diff(offsets) > piece)
    if big.size == 0:
        return arr, counts
    extra = []
    for row in big:  # one Python step per huge document, not per document
        cuts = find_cuts(data, int(offsets[row]), int(offsets[row + 1]), piece, window, check)
        counts[row] += len(cuts)
        extra += cuts
    new_offsets = np.sort(np.concatenate([offsets, np.asarray(extra, np.int64)]), kind="stable")
    return strings_from_buffers(new_offsets, data), counts


def with_eod(flat: np.ndarray, piece_lengths: np.ndarray, counts: np.ndarray, eod: int) -> Any:
    """(tokens with `eod` after each document, per-document lengths including it)."""
    starts = np.cumsum(counts) - counts
    doc = np.add.reduceat(piece_lengths, starts) if len(counts) else np.zeros(0, np.int64)
    tokens = np.insert(flat, np.cumsum(doc), np.int32(eod)).astype(np.int32, copy=False)
    return tokens, doc.astype(np.int64) + 1


def splice(
    flat: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    new_flat: np.ndarray,
    new_lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace the tokens of pieces `rows` (sorted) by `new_flat` cut at `new_lengths`."""
    keep = np.ones(len(lengths), bool)
    keep[rows] = False
    out_lengths = lengths.copy()
    out_lengths[rows] = new_lengths
    out = np.empty(int(out_lengths.sum()), np.int32)
    dest = np.repeat(keep, out_lengths)
    out[dest] = flat[np.repeat(keep, lengths)]
    out[~dest] = new_flat
    return out, out_lengths


def gather(flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The tokens of pieces `rows` (sorted, a few: a sample), concatenated."""
    starts = np.cumsum(lengths) - lengths
    parts = [flat[s : s + n] for s, n in zip(starts[rows], lengths[rows], strict=True)]
    return np.concatenate(parts) if parts else flat[:0]
