"""Benchmark peers for `pipe bench tokenize`: what pipe is compared with, not how pipe runs.

- `megatron_fast_path`: THE MEGATRON-LM FAST-PATH METHOD (its `tools/preprocess_data_fast.py`):
  one process, GigaToken `encode_files` over the whole JSONL(.gz) file, then megatron-core's
  `IndexedDatasetBuilder` writing one bin/idx, EOD after each document. megatron-core 0.19.2
  has no `add_documents`, so it is a loop of `add_document`. Holds every token in memory; no
  resume, no train/valid/test split.
- `gigatoken_ceiling`: GigaToken `encode_batch` over text already in memory, all cores.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.json as pj

from stages.engine_text import as_large_strings, awkward_strings


def megatron_fast_path(corpus: Path, tokenizer: Path, eod: int, out_prefix: Path) -> dict[str, Any]:
    """Seconds (imports included, as a fresh process pays them) and tokens written."""
    start = time.perf_counter()
    import gigatoken
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    tok = gigatoken.Tokenizer(tokenizer)
    docs = tok.encode_files(gigatoken.JsonlFileSource([str(corpus)], field="text")).layout
    offsets, flat = np.asarray(docs.offsets.data), np.asarray(docs.content.data)
    builder = IndexedDatasetBuilder(f"{out_prefix}.bin", dtype=DType.optimal_dtype(tok.vocab_size))
    end = np.array([eod], flat.dtype)
    for a, b in itertools.pairwise(offsets):
        builder.add_document(np.concatenate([flat[a:b], end]), [int(b - a + 1)])
    builder.finalize(f"{out_prefix}.idx")
    tokens = int(flat.size + offsets.size - 1)
    return {"seconds": time.perf_counter() - start, "tokens": tokens}


def gigatoken_ceiling(corpus: Path, tokenizer: Path, repeats: int = 1) -> dict[str, Any]:
    """Tokens/s of GigaToken's parallel `encode_batch` alone (+1 EOD per document counted),
    over the text as an arrow-backed awkward array (a list of str does not run in parallel).
    Best of `repeats` passes of one tokenizer: passes after the first find every word in
    GigaToken's caches (about 2x faster), which a corpus read once never does."""
    import awkward as ak
    import gigatoken

    tok = gigatoken.Tokenizer(tokenizer)
    texts = awkward_strings(as_large_strings(pj.read_json(corpus).column("text")))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = tok.encode_batch(texts, parallel=True)
        seconds.append(time.perf_counter() - start)
    tokens = int(ak.sum(ak.num(out))) + len(out)
    return {"seconds": min(seconds), "tokens": tokens, "tokens_per_s": tokens / min(seconds)}
