"""The tokenize stage's side of the engine (stages/engine.py): what keys it, and one engine per
process, loaded once.

The key names the engine asked for and the versions of both libraries: the bytes do not depend
on which engine ran (stages/engine.py guarantees HF-identical tokens), but a version change
must not reuse old artifacts silently. The manifest records the engine that actually ran.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from stages.engine import HFEngine, make_engine, read_tokenizer_json, reference_tokenizer
from stages.engine_text import unstable_table
from util.errors import InputError, PipeError
from util.files import read_json


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker needs to build the engine: no transformers, no torch."""

    tokenizer: str  # a folder holding tokenizer.json
    engine: str  # auto, gigatoken or hf
    eod_id: int


def engine_key(engine: str) -> dict[str, Any]:
    """The engine part of the tokenize key: the choice and the library versions."""
    return {
        "choice": engine,
        "gigatoken": _version("gigatoken"),
        "tokenizers": _version("tokenizers"),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def tokenizer_facts(where: str) -> dict[str, int]:
    """EOD id and vocabulary size, read the way transformers reads them, without importing it.
    Read once per process and version of the files (loading tokenizer.json takes half a second)."""
    folder = Path(where)
    if not (folder / "tokenizer.json").is_file():
        raise InputError(
            f"tokenizer {where!r}: pipe needs a fast tokenizer (tokenizer.json); this folder "
            f"has none"
        )
    stamps = tuple(_stamp(folder / name) for name in ("tokenizer.json", *_EOS_FILES))
    return dict(_facts(where, stamps))


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of a file, None if it is absent: what tells a changed file apart."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


_EOS_FILES = ("tokenizer_config.json", "special_tokens_map.json")


@cache
def _facts(where: str, stamps: tuple) -> dict[str, int]:
    folder = Path(where)
    tok = reference_tokenizer(read_tokenizer_json(folder))
    eos = None
    for name in _EOS_FILES:
        config = read_json(folder / name) or {}
        eos = eos or config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    eod = tok.token_to_id(eos) if eos else None
    if eod is None:
        raise InputError(f"tokenizer {where!r}: has no EOS token to use as end-of-document")
    return {"eod_id": eod, "vocab_size": tok.get_vocab_size(with_added_tokens=True)}


_loaded: dict[tuple, HFEngine] = {}
_loading = threading.Lock()


def encoder_for(spec: EncoderSpec, threads: int | None) -> HFEngine:
    """The engine for `spec` in this process, loaded once (a Ray worker keeps it across tasks;
    the driver starts loading it on a thread and picks it up here)."""
    key = (spec, threads)
    with _loading:
        if key not in _loaded:
            try:
                _loaded[key] = make_engine(spec.tokenizer, spec.eod_id, spec.engine, threads)
            except Exception as e:  # `--engine gigatoken` on a tokenizer it cannot run
                raise PipeError(f"engine {spec.engine!r} for {spec.tokenizer}: {e}") from None
            unstable_table()  # the code-point table its first encode needs, built here too
    return _loaded[key]


def counts(engine: HFEngine, encoded: Any) -> dict[str, Any]:
    """What a chunk's receipt records of the engine: which one ran, and its fallbacks."""
    return engine.describe() | asdict(encoded.stats)
