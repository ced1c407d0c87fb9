"""Arrow values built from raw buffers, not converted from Python objects.

Why: pyarrow's first conversion of a Python object (`pa.array`, `pa.scalar`, a str or int
handed to a compute function) or to numpy (`to_numpy`) imports pandas, where installed, to
check for pandas types: 0.23 s, more than the rest of a 40 MB download takes. The download's
per-batch code builds its constants and arrays with these instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def scalar(value: str | int) -> pa.Scalar:
    """A string or int64 arrow scalar."""
    if isinstance(value, str):
        data = value.encode()
        return strings_from_buffers(np.array([0, len(data)], np.int32), data)[0]
    return int64s(np.array([value], np.int64))[0]


def strings(values: Sequence[str | None]) -> pa.LargeStringArray:
    """A large_string array of `values` (None as empty text)."""
    encoded = [(v or "").encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return strings_from_buffers(offsets, b"".join(encoded))


def strings_from_buffers(
    offsets: np.ndarray, data: bytes | np.ndarray
) -> pa.StringArray | pa.LargeStringArray:
    """Strings over UTF-8 `data` cut at `offsets` (no copy, not validated): int64 offsets make
    a large_string array, int32 ones a string array."""
    kind = pa.large_string() if offsets.dtype == np.int64 else pa.string()
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(kind, len(offsets) - 1, buffers)


def int64s(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Int64Array:
    """An int64 array, null where `valid` is False."""
    bits = None if valid is None else pa.py_buffer(_bits(valid))
    data = pa.py_buffer(values.astype(np.int64, copy=False))
    return pa.Array.from_buffers(pa.int64(), len(values), [bits, data])


def int_values(arr: pa.Array) -> np.ndarray:
    """An integer array without nulls as numpy, zero-copy (its `to_numpy` imports pandas)."""
    assert arr.null_count == 0 and pa.types.is_integer(arr.type), arr.type
    dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(arr.type) else 'u'}{arr.type.byte_width}")
    return np.frombuffer(arr.buffers()[1], dtype)[arr.offset : arr.offset + len(arr)]


def _bits(values: np.ndarray) -> np.ndarray:
    """Booleans as arrow packs them: one bit each, least significant first."""
    return np.packbits(values.astype(bool, copy=False), bitorder="little")
