"""Arrow's memory pool in pipe's processes: jemalloc, where pyarrow was built with it.

Why: every Parquet read and JSON parse allocates fresh buffers, and on the machines measured
here the kernel's zeroing of fresh pages was the largest single cost of the download (43% of
its CPU with arrow's default pool, mimalloc). With jemalloc the download of GCIDE went from
176-214 to 224-242 MB/s of text (2 cores).
"""

from __future__ import annotations

import pyarrow as pa


def use_jemalloc() -> None:
    """Make jemalloc arrow's default pool in this process (before its big allocations); a
    pyarrow built without it keeps its own default."""
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pass
