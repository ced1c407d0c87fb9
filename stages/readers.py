"""Readers of a dataset's source: local files (jsonl, parquet, txt) or a hub dataset.

Each yields Records in a fixed order with a reference ("file:line") that errors name, so a bad
line is reported as one line naming the file and line.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from util.errors import InputError

BATCH_ROWS = 1_000  # rows per Parquet read batch


@dataclass(frozen=True)
class Record:
    """One raw document as read from its source, before any cleaning."""

    id: str | None
    text: Any
    ref: str  # "name:line" (name below the files' common folder) or "hub path[index]"
    where: str = ""  # the real path and line, for error messages


def expand_files(pattern: str) -> list[Path]:
    """The real files a `files` source names, each once however many paths reach it (a
    symlink loop in a globbed folder reads nothing twice), sorted so shards come out the
    same every run."""
    found = {Path(os.path.realpath(p)) for p in glob.glob(pattern, recursive=True)}
    matches = sorted(p for p in found if p.is_file())
    if not matches:
        raise InputError(f"{pattern}: no such file (the path or glob matched nothing)")
    return matches


def stable_names(files: list[Path]) -> dict[Path, str]:
    """Each file's name below the files' common folder: what ids, refs and cache keys use, so
    that they do not depend on where the corpus lives or how its path was spelled."""
    if not files:
        return {}
    base = Path(os.path.commonpath([p.parent for p in files]))
    return {p: str(p.relative_to(base)) for p in files}


def read_files(files: list[Path], fmt: str, text_field: str, id_field: str) -> Iterator[Record]:
    """Records from local files, with errors that name the file and line."""
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "txt": _read_txt}[fmt]
    for path, name in stable_names(files).items():
        yield from reader(path, name, text_field, id_field)


def _read_jsonl(path: Path, name: str, text_field: str, id_field: str) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)  # as Windows tools write it
                if not raw.strip():
                    yield Record(None, "", f"{name}:{lineno}")  # counted as an empty document
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(
                        f"{path}:{lineno}: not valid UTF-8 (byte {e.start} of the "
                        f"line is {raw[e.start : e.start + 1]!r})"
                    ) from None
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(
                        f"{path}:{lineno}: malformed JSON at column {e.colno}: {e.msg}"
                    ) from None
                if not isinstance(obj, dict):
                    raise InputError(
                        f"{path}:{lineno}: expected a JSON object per line, got "
                        f"{type(obj).__name__}"
                    )
                yield _record(obj, text_field, id_field, f"{name}:{lineno}", f"{path}:{lineno}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip after line {lineno} ({e})") from None


def _read_parquet(path: Path, name: str, text_field: str, id_field: str) -> Iterator[Record]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise InputError(
            f"{path}: no text field '{text_field}'; columns present: "
            f'{", ".join(names)} (set "text_field" in the blend)'
        )
    columns = [text_field] + ([id_field] if id_field in names else [])
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for obj in batch.to_pylist():
                yield _record(obj, text_field, id_field, f"{name}:row {row}", f"{path}:row {row}")
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: unreadable Parquet data after row {row} ({e})") from None


def _read_txt(path: Path, name: str, text_field: str, id_field: str) -> Iterator[Record]:
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte offset {e.start})") from None
    yield Record(name, text, f"{name}:1")


def _record(obj: dict, text_field: str, id_field: str, ref: str, where: str = "") -> Record:
    """A record from one parsed row; `where` (the real path and line) is what errors name."""
    if text_field not in obj:
        raise InputError(
            f"{where or ref}: no text field '{text_field}'; fields present: "
            f'{", ".join(map(str, obj)) or "(none)"} (set "text_field" in the blend)'
        )
    doc_id = obj.get(id_field)
    return Record(None if doc_id is None else str(doc_id), obj[text_field], ref, where or ref)


def read_hub(
    path: str,
    name: str | None,
    split: str,
    revision: str | None,
    data_files: Any,
    text_field: str,
    id_field: str,
) -> Iterator[Record]:
    """Records streamed from a Hugging Face dataset (or a local folder `datasets` can load)."""
    import datasets

    try:
        ds = datasets.load_dataset(
            path, name=name, split=split, revision=revision, data_files=data_files, streaming=True
        )
    except Exception as e:  # datasets raises many types; all mean "cannot load this source"
        raise InputError(f"hf dataset {path!r}: cannot load ({type(e).__name__}: {e})") from None
    for index, obj in enumerate(ds):
        yield _record(obj, text_field, id_field, f"{path}[{index}]")
