"""Download stage: one dataset (hub or local files) -> Parquet shards of `id`, `text`, source.

Records stream through in order, so a shard is a pure function of the source and its position:
a resumed run re-reads the source, skips the documents of shards already written (checked by
checksum) and writes the rest, giving the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stages.base import Counts, InputError
from stages.faults import maybe_die
from stages.files import atomic_write_json, file_sha256, read_json, writing

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("source_ref", pa.string()),
    ]
)
# Tests shrink these (env) so that a small corpus has many shards and chunks to kill and resume;
# an override is part of the download key (see `layout_overrides`).
DOCS_PER_SHARD = int(os.environ.get("PIPE_DOCS_PER_SHARD") or 50_000)
# a row group is one tokenize task: small enough to spread over cores
DOCS_PER_ROW_GROUP = int(os.environ.get("PIPE_DOCS_PER_ROW_GROUP") or 1_000)
BYTES_PER_ROW_GROUP = 64 << 20


def layout_overrides() -> dict[str, int]:
    """Shard sizes set through the environment; they change the output, so they key the cache."""
    names = {
        "docs_per_shard": "PIPE_DOCS_PER_SHARD",
        "docs_per_row_group": "PIPE_DOCS_PER_ROW_GROUP",
    }
    return {k: int(os.environ[v]) for k, v in names.items() if os.environ.get(v)}


@dataclass(frozen=True)
class Record:
    """One raw document as read from its source, before any cleaning."""

    id: str | None
    text: Any
    ref: str  # "file:line" or "hub path[index]", for error messages and lineage


def expand_files(pattern: str) -> list[Path]:
    """The files a `files` source names, sorted so that shards come out the same every run."""
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not matches:
        raise InputError(f"{pattern}: no such file (the path or glob matched nothing)")
    return matches


def read_files(files: list[Path], fmt: str, text_field: str, id_field: str) -> Iterator[Record]:
    """Records from local files, with errors that name the file and line."""
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "txt": _read_txt}[fmt]
    for path in files:
        yield from reader(path, text_field, id_field)


def _read_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    yield Record(None, "", f"{path}:{lineno}")  # counted as an empty document
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
                        f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})"
                    ) from None
                if not isinstance(obj, dict):
                    raise InputError(
                        f"{path}:{lineno}: expected a JSON object per line, got "
                        f"{type(obj).__name__}"
                    )
                yield _record(obj, text_field, id_field, f"{path}:{lineno}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"{path}: truncated or corrupt gzip after line {lineno} ({e})") from None


def _read_parquet(path: Path, text_field: str, id_field: str) -> Iterator[Record]:
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
        for batch in pf.iter_batches(batch_size=DOCS_PER_ROW_GROUP, columns=columns):
            for obj in batch.to_pylist():
                yield _record(obj, text_field, id_field, f"{path}:row {row}")
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: unreadable Parquet data after row {row} ({e})") from None


def _read_txt(path: Path, text_field: str, id_field: str) -> Iterator[Record]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte offset {e.start})") from None
    yield Record(path.name, text, f"{path}:1")


def _record(obj: dict, text_field: str, id_field: str, ref: str) -> Record:
    if text_field not in obj:
        raise InputError(
            f"{ref}: no text field '{text_field}'; fields present: "
            f'{", ".join(map(str, obj)) or "(none)"} (set "text_field" in the blend)'
        )
    doc_id = obj.get(id_field)
    return Record(None if doc_id is None else str(doc_id), obj[text_field], ref)


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


def write_shards(
    records: Iterator[Record],
    out: Path,
    dataset: str,
    limit: int | None,
    on_progress: Callable[[int, int], None],
) -> dict[str, Any]:
    """Write up to `limit` non-empty documents as Parquet shards in `out`; resume finished ones.

    Returns stats: docs, chars, shards, skipped (by reason) and how many shards were reused.
    """
    out.mkdir(parents=True, exist_ok=True)
    counts = Counts()
    shard, rows, reused = 0, [], 0
    shard_done = _shard_is_done(out, 0)
    for rec in records:
        if limit is not None and counts.docs >= limit:
            break
        maybe_die("download.record")
        text = _clean_text(rec, counts)
        if text is None:
            continue
        counts.docs += 1
        counts.chars += len(text)
        on_progress(1, len(text))
        if not shard_done:
            doc_id = rec.id if rec.id is not None else f"{dataset}:{rec.ref}"
            rows.append((doc_id, text, dataset, rec.ref))
        if counts.docs % DOCS_PER_SHARD == 0:
            reused += shard_done
            if not shard_done:
                _write_shard(out, shard, rows)
            shard, rows = shard + 1, []
            shard_done = _shard_is_done(out, shard)
    if counts.docs % DOCS_PER_SHARD:
        reused += shard_done
        if not shard_done:
            _write_shard(out, shard, rows)
        shard += 1
    _remove_stale_shards(out, shard)
    return {
        "docs": counts.docs,
        "chars": counts.chars,
        "shards": shard,
        "reused_shards": reused,
        "skipped": counts.skipped,
    }


def _clean_text(rec: Record, counts: Counts) -> str | None:
    """The text to keep, or None after counting why it was skipped."""
    if rec.text is None:
        counts.skip("null_text")
        return None
    if not isinstance(rec.text, str):
        raise InputError(f"{rec.ref}: text field is {type(rec.text).__name__}, not a string")
    if not rec.text.strip():
        counts.skip("empty")
        return None
    return rec.text


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _receipt(out: Path, i: int) -> Path:
    return out / f".{shard_name(i)}.done"


def _shard_is_done(out: Path, i: int) -> bool:
    """A shard counts as written only if its receipt exists and its checksum still matches."""
    path, receipt = out / shard_name(i), read_json(_receipt(out, i))
    return bool(receipt) and path.is_file() and file_sha256(path) == receipt.get("sha256")


def _write_shard(out: Path, i: int, rows: list[tuple[str, str, str, str]]) -> None:
    path = out / shard_name(i)
    tmp = path.with_suffix(".parquet.tmp")
    with writing(tmp), pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for group in _row_groups(rows):
            columns = list(zip(*group, strict=True))
            writer.write_table(
                pa.Table.from_arrays([pa.array(c, pa.string()) for c in columns], schema=SCHEMA)
            )
    digest = file_sha256(tmp)
    maybe_die("download.shard_tmp")
    tmp.replace(path)
    maybe_die("download.shard_written")
    atomic_write_json(_receipt(out, i), {"sha256": digest, "docs": len(rows)})
    maybe_die("download.shard_sealed")


def _row_groups(rows: list) -> Iterator[list]:
    """Row groups of at most DOCS_PER_ROW_GROUP docs or BYTES_PER_ROW_GROUP of text."""
    group, size = [], 0
    for row in rows:
        group.append(row)
        size += len(row[1])
        if len(group) >= DOCS_PER_ROW_GROUP or size >= BYTES_PER_ROW_GROUP:
            yield group
            maybe_die("download.row_group")
            group, size = [], 0
    if group:
        yield group


def _remove_stale_shards(out: Path, n: int) -> None:
    """Drop shards past the end (left by an earlier attempt with more documents)."""
    for path in out.glob("part-*.parquet*"):
        if int(path.name[5:10]) >= n:
            path.unlink()
    for path in out.glob(".part-*.parquet.done"):
        if int(path.name[6:11]) >= n:
            path.unlink()
