"""The benchmark's Megatron-LM fast-path peer writes what pipe's engine computes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from conftest import make_tokenizer, write_jsonl

from pipeline.bench_peer import gigatoken_ceiling, megatron_fast_path
from stages.engine import make_engine


def test_peer_bin_idx_equal_engine_tokens(tmp_path: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset  # seconds: torch

    tok = make_tokenizer(tmp_path / "tok")
    corpus = write_jsonl(tmp_path / "c.jsonl.gz", 300, 3, "c")
    peer = megatron_fast_path(corpus, tok, 2, tmp_path / "peer")
    with gzip.open(corpus, "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    want = make_engine(tok, 2, engine="hf").encode(texts)
    data = IndexedDataset(str(tmp_path / "peer"))
    assert len(data) == len(texts) and peer["tokens"] == want.tokens.size
    got = np.concatenate([data[i] for i in range(len(data))])
    assert np.array_equal(got.astype(np.int32), want.tokens)
    ceiling = gigatoken_ceiling(corpus, tok)
    assert ceiling["tokens"] == want.tokens.size and ceiling["tokens_per_s"] > 0
