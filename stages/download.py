"""Download stage: one dataset (hub or local files) -> Parquet shards of `id`, `text`, source.

Config (what keys it): dataset, text_field, id_field, limit, format or hf, shard sizes; plus the
source fingerprint (file hashes or the hub revision). Records stream through in order, so a
shard is a pure function of the source and its position: a resumed run re-reads the source,
skips the documents of shards already written (checked by checksum) and writes the rest, giving
the same bytes as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stages.base import Context, Counts
from stages.readers import Record, expand_files, read_files, read_hub
from util.errors import InputError, PipeError
from util.faults import maybe_die
from util.files import atomic_write_json, file_sha256, read_json, writing

NAME = "download"
VERSION = 2
RESUMABLE = True
COLUMNS = ("dataset", "status", "files", "docs", "chars", "skipped", "shards", "seconds")

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("source_ref", pa.string()),
    ]
)
DOCS_PER_SHARD = 50_000
# a row group is one tokenize task: small enough to spread over cores
DOCS_PER_ROW_GROUP = 1_000
BYTES_PER_ROW_GROUP = 64 << 20

__all__ = ["expand_files"]


@dataclass(frozen=True)
class Layout:
    """Shard sizes; tests shrink them so a small corpus has many shards and chunks to kill."""

    docs_per_shard: int = DOCS_PER_SHARD
    docs_per_row_group: int = DOCS_PER_ROW_GROUP


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    """Stream the source into shards in `work`; resume the shards an earlier attempt sealed."""
    if config.get("files"):
        records = read_files(
            [Path(p) for p in config["files"]],
            config["format"],
            config["text_field"],
            config["id_field"],
        )
    else:
        hf = config["hf"]
        records = read_hub(
            config["hf_path"],
            hf["name"],
            hf["split"],
            hf["revision"],
            hf["data_files"],
            config["text_field"],
            config["id_field"],
        )
    name, limit = config["dataset"], config["limit"]
    layout = Layout(
        **{k: config[k] for k in ("docs_per_shard", "docs_per_row_group") if k in config}
    )
    with ctx.bar(f"download {name}", limit, "chars") as bar:
        stats = write_shards(records, work, name, limit, bar.advance, layout)
    source = config.get("files") or [config["hf_path"]]
    if stats["docs"] == 0:
        skipped = ", ".join(f"{k}={v}" for k, v in stats["skipped"].items()) or "none"
        raise PipeError(
            f"dataset {name!r}: no documents to keep in {', '.join(source)} (skipped: "
            f"{skipped}); check that the files hold text in field {config['text_field']!r}"
        )
    if stats["reused_shards"]:
        ctx.say(
            f"download {name}: resumed, {stats['reused_shards']} of "
            f"{stats['shards']} shards already written and verified"
        )
    stats |= {"source": source, "files": len(source)}
    # The shard receipts stay in the artifact: a run killed while publishing then resumes with
    # every shard verified instead of redoing them all.
    return stats


def rows(name: str, stats: dict[str, Any], status: str) -> Iterator[tuple]:
    skipped = sum(stats.get("skipped", {}).values())
    yield (
        name,
        status,
        stats["files"],
        stats["docs"],
        stats["chars"],
        skipped,
        stats["shards"],
        stats.get("seconds", 0.0),
    )


def write_shards(
    records: Iterator[Record],
    out: Path,
    dataset: str,
    limit: int | None,
    on_progress: Callable[[int, int], None],
    layout: Layout = Layout(),
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
        if counts.docs % layout.docs_per_shard == 0:
            reused += shard_done
            if not shard_done:
                _write_shard(out, shard, rows, layout.docs_per_row_group)
            shard, rows = shard + 1, []
            shard_done = _shard_is_done(out, shard)
    if counts.docs % layout.docs_per_shard:
        reused += shard_done
        if not shard_done:
            _write_shard(out, shard, rows, layout.docs_per_row_group)
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
        raise InputError(
            f"{rec.where or rec.ref}: text field is {type(rec.text).__name__}, not a string"
        )
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


def _write_shard(out: Path, i: int, rows: list[tuple[str, str, str, str]], per_group: int) -> None:
    path = out / shard_name(i)
    tmp = path.with_suffix(".parquet.tmp")
    with writing(tmp), pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for group in _row_groups(rows, per_group):
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


def _row_groups(rows: list, per_group: int) -> Iterator[list]:
    """Row groups of at most `per_group` docs or BYTES_PER_ROW_GROUP of text."""
    group, size = [], 0
    for row in rows:
        group.append(row)
        size += len(row[1])
        if len(group) >= per_group or size >= BYTES_PER_ROW_GROUP:
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
