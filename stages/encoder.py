"""The tokenize stage's view of a tokenization engine: build one from a spec, encode a chunk.

TEMPORARY: Hugging Face `tokenizers` only, until stages/engine.py (GigaToken) lands.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from util.errors import InputError


@dataclass(frozen=True)
class EncoderSpec:
    tokenizer: str  # folder holding tokenizer.json
    engine: dict[str, Any]
    eod_id: int


@dataclass
class Encoded:
    tokens: np.ndarray  # int32, every document followed by the EOD
    lengths: np.ndarray  # int64, per document, EOD included
    counts: dict[str, int] = field(default_factory=dict)


class Encoder(Protocol):
    def encode(self, texts: Any) -> Encoded: ...


def choose(engine: str, where: str) -> dict[str, Any]:
    import tokenizers

    return {"name": "hf", "version": tokenizers.__version__}


def tokenizer_facts(where: str) -> dict[str, int]:
    from tokenizers import Tokenizer

    folder = Path(where)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    eos = config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    eod = tok.token_to_id(eos) if eos else None
    if eod is None:
        raise InputError(f"tokenizer {where!r}: has no EOS token to use as end-of-document")
    return {"eod_id": eod, "vocab_size": tok.get_vocab_size(with_added_tokens=True)}


class HFEncoder:
    def __init__(self, spec: EncoderSpec, threads: int | None) -> None:
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if (threads or 2) > 1 else "false"
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(Path(spec.tokenizer) / "tokenizer.json"))
        self.eod = spec.eod_id

    def encode(self, texts: Any) -> Encoded:
        texts = texts.to_pylist() if hasattr(texts, "to_pylist") else texts
        encodings = self.tok.encode_batch_fast(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) + 1 for e in encodings), np.int64, len(encodings))
        tokens = np.empty(int(lengths.sum()), dtype=np.int32)
        ends = np.cumsum(lengths)
        for enc, end, n in zip(encodings, ends, lengths, strict=True):
            tokens[end - n : end - 1] = enc.ids
        tokens[ends - 1] = self.eod
        return Encoded(tokens, lengths, {})


_loaded: dict[tuple, Encoder] = {}


def encoder_for(spec: EncoderSpec, threads: int | None) -> Encoder:
    key = (spec.tokenizer, json.dumps(spec.engine, sort_keys=True), spec.eod_id, threads)
    if key not in _loaded:
        _loaded[key] = HFEncoder(spec, threads)
    return _loaded[key]
