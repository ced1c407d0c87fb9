"""Readers of a dataset's source: local files (jsonl, parquet, txt) or a hub dataset.

Each yields Records in a fixed order with a reference ("file:line") that errors name, so a bad
line is reported as one line naming the file and line.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from isal import igzip, isal_zlib

from util.arrow_values import int64s, scalar
from util.errors import InputError
from util.threads import Ahead

BATCH_ROWS = 1_000  # rows per batch of the record-by-record readers
# What every reader yields: the document's id (null: the writer derives one from `ref`), its
# text (null: skipped and counted) and where it came from ("name:line").
BATCH = pa.schema([("id", pa.string()), ("text", pa.string()), ("ref", pa.string())])
# One document is held whole while it is read and tokenized (in pieces), so its size bounds
# memory: at this limit the whole process tree stays under 4 GB (README, tests).
MAX_DOCUMENT_BYTES = 512 << 20


def too_big(where: str, size: int) -> str:
    return (
        f"{where}: a document of {size / 2**20:,.0f} MiB is over pipe's limit of "
        f"{MAX_DOCUMENT_BYTES >> 20} MiB per document; split it into several documents"
    )


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


def read_files(files: list[Path], fmt: str, text_field: str, id_field: str) -> Iterator[pa.Table]:
    """Batches (id, text, ref) from local files, with errors that name the file and line."""
    for path, name in stable_names(files).items():
        if fmt == "jsonl":
            yield from _read_jsonl(path, name, text_field, id_field)
        else:
            reader = _read_parquet if fmt == "parquet" else _read_txt
            yield from batched(reader(path, name, text_field, id_field))


def batched(records: Iterator[Record], size: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """Records as (id, text, ref) tables; a text that is not a string is refused here."""
    group: list[Record] = []
    for rec in records:
        if rec.text is not None and not isinstance(rec.text, str):
            raise InputError(f"{rec.where}: text field is {type(rec.text).__name__}, not a string")
        group.append(rec)
        if len(group) == size:
            yield _table(group)
            group = []
    if group:
        yield _table(group)


def _table(group: list[Record]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([getattr(r, c) for r in group], pa.string()) for c in ("id", "text", "ref")],
        schema=BATCH,
    )


def _read_jsonl(path: Path, name: str, text_field: str, id_field: str) -> Iterator[pa.Table]:
    """Blocks of whole lines parsed by arrow's multi-threaded JSON reader; a block it cannot
    take as is (bad JSON, odd types, bad UTF-8) is parsed line by line to name the first bad
    line. The next block is decompressed on a thread of its own while one is parsed."""
    with Ahead(_line_blocks(path), depth=1) as blocks:
        for first, body, count in blocks:
            try:
                yield _parse_block(body, count, first, name, text_field, id_field)
            except (pa.ArrowException, _NotPlain):
                lines = _lines(body, count)
                yield from batched(_parse_lines(lines, first, path, name, text_field, id_field))


class _NotPlain(Exception):
    """A block that is not one plain JSON object per line: parse it line by line."""


def _line_blocks(path: Path, block: int = 8 << 20) -> Iterator[tuple[int, memoryview, int]]:
    """(number of the first line, whole lines, how many) of about `block` bytes each, BOM
    dropped. The text is never split into lines here (that held the interpreter lock for
    seconds per GB); lines are only counted, 1 MiB at a time (few reads: the lock changes
    hands rarely)."""
    opener = igzip.open if path.name.endswith(".gz") else open  # ISA-L: 3x zlib's speed
    first, parts, size, count = 1, [], 0, 0
    try:
        with opener(path, "rb") as f:
            while data := f.read(1 << 20):
                if first == 1 and not parts:
                    data = data.removeprefix(codecs.BOM_UTF8)  # as Windows tools write it
                parts.append(data)
                size += len(data)
                count += data.count(b"\n")
                if size >= block and count:
                    whole = b"".join(parts)
                    cut = whole.rfind(b"\n") + 1
                    yield first, memoryview(whole)[:cut], count
                    first += count
                    parts, size, count = [whole[cut:]], len(whole) - cut, 0
            whole = b"".join(parts)
            if whole:
                yield first, memoryview(whole), count + (not whole.endswith(b"\n"))
    except _GZIP_ERRORS as e:
        last = _whole_lines_before_damage(path)
        raise InputError(f"{path}: truncated or corrupt gzip after line {last} ({e})") from None


_GZIP_ERRORS = (EOFError, igzip.BadGzipFile, isal_zlib.error)


def _whole_lines_before_damage(path: Path) -> int:
    """How many whole lines a damaged gzip file yields: read again 64 KiB at a time (only
    once the damage is known), so that the error names the last good line."""
    lines = 0
    try:
        with igzip.open(path, "rb") as f:
            while data := f.read(1 << 16):
                lines += data.count(b"\n")
    except _GZIP_ERRORS:
        pass
    return lines


def _parse_block(
    body: memoryview, count: int, first: int, name: str, text_field: str, id_field: str
) -> pa.Table:
    """`count` lines, one JSON object each or blank (arrow skips blank lines; they are kept
    here as empty documents, counted as skipped later)."""
    parsed = pj.read_json(pa.BufferReader(pa.py_buffer(body)))
    blank = _blank_lines(body, count) if parsed.num_rows != count else None
    if blank is not None and parsed.num_rows != count - int(blank.sum()):
        raise _NotPlain()
    text = _column(parsed, text_field, (pa.string(),))
    if text is None or text.null_count:
        raise _NotPlain()  # a missing field reads as null: the line-by-line reader tells them apart
    ids = _column(parsed, id_field, (pa.string(), pa.int64(), pa.null()))
    ids = pa.nulls(parsed.num_rows, pa.string()) if ids is None else ids.cast(pa.string())
    text = text.cast(pa.string())
    text.validate(full=True)  # arrow's JSON reader lets invalid UTF-8 through: refuse it here
    if blank is not None:  # each row to its line; a blank line reads as an empty text
        rows = int64s(np.cumsum(~blank) - 1, valid=~blank)  # (null on a blank line)
        text = pc.fill_null(text.take(rows), scalar(""))
        ids = ids.take(rows)
    numbers = int64s(np.arange(first, first + count)).cast(pa.string())
    refs = pc.binary_join_element_wise(scalar(name), numbers, scalar(":"))
    return pa.Table.from_arrays([ids, text, refs], schema=BATCH)


def _blank_lines(body: memoryview, count: int) -> np.ndarray:
    """Which of the block's lines are blank (only for a block that has some)."""
    return np.fromiter((not line.strip() for line in _lines(body, count)), bool, count)


def _lines(body: memoryview, count: int) -> list[bytes]:
    """A block's lines, split in Python: only where arrow could not take it whole."""
    return bytes(body).split(b"\n")[:count]


def _column(table: pa.Table, field: str, types: tuple) -> pa.ChunkedArray | None:
    if field not in table.column_names:
        return None
    column = table.column(field)
    if column.type not in types:
        raise _NotPlain()
    return column


def _parse_lines(
    lines: list[bytes], first: int, path: Path, name: str, text_field: str, id_field: str
) -> Iterator[Record]:
    for lineno, raw in enumerate(lines, start=first):
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
                f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}"
            )
        yield _record(obj, text_field, id_field, f"{name}:{lineno}", f"{path}:{lineno}")


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
    if (size := path.stat().st_size) > MAX_DOCUMENT_BYTES:  # refused before it is read
        raise InputError(too_big(str(path), size))
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
) -> Iterator[pa.Table]:
    """Batches streamed from a Hugging Face dataset (or a local folder `datasets` can load)."""
    import datasets

    try:
        ds = datasets.load_dataset(
            path, name=name, split=split, revision=revision, data_files=data_files, streaming=True
        )
    except Exception as e:  # datasets raises many types; all mean "cannot load this source"
        raise InputError(f"hf dataset {path!r}: cannot load ({type(e).__name__}: {e})") from None
    records = (_record(obj, text_field, id_field, f"{path}[{i}]") for i, obj in enumerate(ds))
    yield from batched(records)
