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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stages.base import Context, Counts
from stages.readers import expand_files, read_files, read_hub
from util.errors import PipeError
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
    batches: Iterator[pa.Table],
    out: Path,
    dataset: str,
    limit: int | None,
    on_progress: Callable[[int, int], None],
    layout: Layout = Layout(),
) -> dict[str, Any]:
    """Write up to `limit` non-empty documents as Parquet shards in `out`; resume finished ones.

    `batches` are tables of id (null: derived from the ref), text and ref (readers.BATCH). The
    work is columnar (arrow compute), so the writer is not the wall. Returns stats: docs,
    chars, shards, skipped (by reason) and how many shards were reused.
    """
    out.mkdir(parents=True, exist_ok=True)
    counts = Counts()
    shard, pending, reused = 0, [], 0
    for batch in batches:
        maybe_die("download.record", len(batch))
        batch = _keep(batch, dataset, counts)
        if limit is not None:
            batch = batch.slice(0, max(0, limit - counts.docs))
        if not len(batch):
            if limit is not None and counts.docs >= limit:
                break
            continue
        chars = int(pc.sum(pc.utf8_length(batch.column("text"))).as_py() or 0)
        counts.docs += len(batch)
        counts.chars += chars
        on_progress(len(batch), chars)
        pending.append(batch)
        while sum(map(len, pending)) >= layout.docs_per_shard:
            rows = pa.concat_tables(pending)
            reused += _flush(out, shard, rows.slice(0, layout.docs_per_shard), layout)
            shard, pending = shard + 1, [rows.slice(layout.docs_per_shard)]
    if rows := sum(map(len, pending)):
        reused += _flush(out, shard, pa.concat_tables(pending), layout)
        shard += 1
    _remove_stale_shards(out, shard)
    return {
        "docs": counts.docs,
        "chars": counts.chars,
        "shards": shard,
        "reused_shards": reused,
        "skipped": counts.skipped,
    }


def _keep(batch: pa.Table, dataset: str, counts: Counts) -> pa.Table:
    """The rows to keep, in the shard schema, after counting why the others were skipped."""
    text = batch.column("text")
    null = pc.is_null(text)
    empty = pc.and_(pc.invert(null), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0))
    for reason, mask in (("null_text", null), ("empty", empty)):
        if n := int(pc.sum(mask).as_py() or 0):
            counts.skip(reason, n)
    batch = batch.filter(pc.invert(pc.or_(null, empty)))
    ref = batch.column("ref")
    derived = pc.binary_join_element_wise(dataset, ref, ":")
    doc_id = pc.coalesce(batch.column("id"), derived)
    source = pa.array([dataset] * len(batch), pa.string())
    return pa.Table.from_arrays([doc_id, batch.column("text"), source, ref], schema=SCHEMA)


def _flush(out: Path, i: int, rows: pa.Table, layout: Layout) -> bool:
    """Write shard `i` unless a sealed copy is already there; True if it was."""
    if _shard_is_done(out, i):
        return True
    _write_shard(out, i, rows, layout.docs_per_row_group)
    return False


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _receipt(out: Path, i: int) -> Path:
    return out / f".{shard_name(i)}.done"


def _shard_is_done(out: Path, i: int) -> bool:
    """A shard counts as written only if its receipt exists and its checksum still matches."""
    path, receipt = out / shard_name(i), read_json(_receipt(out, i))
    return bool(receipt) and path.is_file() and file_sha256(path) == receipt.get("sha256")


def _write_shard(out: Path, i: int, rows: pa.Table, per_group: int) -> None:
    path = out / shard_name(i)
    tmp = path.with_suffix(".parquet.tmp")
    with writing(tmp), pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for start, n in _row_groups(rows, per_group):
            writer.write_table(rows.slice(start, n))
            maybe_die("download.row_group")
    digest = file_sha256(tmp)
    maybe_die("download.shard_tmp")
    tmp.replace(path)
    maybe_die("download.shard_written")
    atomic_write_json(_receipt(out, i), {"sha256": digest, "docs": len(rows)})
    maybe_die("download.shard_sealed")


def _row_groups(rows: pa.Table, per_group: int) -> Iterator[tuple[int, int]]:
    """(start, length) of row groups of at most `per_group` docs or BYTES_PER_ROW_GROUP of
    text (a group closes with the document that reaches that size)."""
    sizes = pc.binary_length(rows.column("text").cast(pa.large_binary())).to_numpy()
    start, size = 0, 0
    for k, n in enumerate(sizes):
        size += int(n)
        if k + 1 - start >= per_group or size >= BYTES_PER_ROW_GROUP:
            yield start, k + 1 - start
            start, size = k + 1, 0
    if start < len(rows):
        yield start, len(rows) - start


def _remove_stale_shards(out: Path, n: int) -> None:
    """Drop shards past the end (left by an earlier attempt with more documents)."""
    for path in out.glob("part-*.parquet*"):
        if int(path.name[5:10]) >= n:
            path.unlink()
    for path in out.glob(".part-*.parquet.done"):
        if int(path.name[6:11]) >= n:
            path.unlink()
