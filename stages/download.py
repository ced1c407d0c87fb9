"""Download stage: one dataset (hub or local files) -> Parquet shards of `id`, `text`, source.

Config (what keys it): dataset, text_field, id_field, limit, format or hf, shard sizes; plus the
source fingerprint (file hashes or the hub revision). Records stream through in order, so a
shard is a pure function of the source and its position: a resumed run re-reads the source,
skips the documents of shards already written (checked by checksum) and writes the rest, giving
the same bytes as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stages.base import Context, Counts
from stages.readers import MAX_DOCUMENT_BYTES, expand_files, read_files, read_hub, too_big
from util.arrow_values import int_values, scalar
from util.child import call_in_child
from util.errors import InputError, PipeError
from util.faults import maybe_die
from util.files import (
    CHECKSUM,
    ChecksummedFile,
    atomic_write_json,
    file_matches,
    read_json,
    remember_digests,
    writing,
)
from util.threads import Ahead

NAME = "download"
VERSION = 3  # 3: shards uncompressed by default
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
SHARD_COMPRESSIONS = ("none", "zstd", "lz4", "snappy")
# No dictionaries (text and ids are unique: trying them costs time, and reading them back 3x)
# and no statistics (nothing filters on them).
SHARD_OPTIONS = {"use_dictionary": False, "write_statistics": False}
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
    # Uncompressed by default: zstd costs more CPU than reading, writing and hashing the shards
    # together (and the tokenize stage reads them back 3x faster), for 2.7x the disk on English
    # text. PIPE_SHARD_COMPRESSION=zstd (or lz4, snappy) trades that speed for disk.
    compression: str = "none"


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    """Stream the source into shards in `work`; resume the shards an earlier attempt sealed.
    While a warm-up runs beside it (tokenize's imports, which want the interpreter lock too),
    the work runs in a process of its own (util/child.py), its progress drawn here."""
    name = config["dataset"]
    with ctx.bar(f"download {name}", config["limit"], "chars") as bar:
        if ctx.warming_up:
            stats = call_in_child(download, (config, work), bar.advance, f"download {name}")
        else:
            stats = download(config, work, bar.advance)
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


def download(
    config: dict[str, Any], work: Path, on_progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """The source named by `config` into shards in `work` (write_shards' stats)."""
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
    layout = Layout(
        **{
            k: config[k]
            for k in ("docs_per_shard", "docs_per_row_group", "compression")
            if k in config
        }
    )
    return write_shards(records, work, config["dataset"], config["limit"], on_progress, layout)


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
    shards = ShardWriter(out, layout)
    # compressing and hashing run on a thread, reading and parsing on another
    with ThreadPoolExecutor(1) as writer, Ahead(batches) as read:
        written = None
        for batch in read:
            maybe_die("download.record", len(batch))
            batch = _keep(batch, dataset, counts)
            if limit is not None:
                batch = batch.slice(0, max(0, limit - counts.docs))
            if len(batch):
                chars = int(pc.sum(pc.utf8_length(batch.column("text"))).as_py() or 0)
                counts.docs += len(batch)
                counts.chars += chars
                on_progress(len(batch), chars)
                if written is not None:
                    written.result()  # one batch in flight: memory stays flat
                written = writer.submit(shards.add, batch)
            if limit is not None and counts.docs >= limit:
                break
        if written is not None:
            written.result()  # (a failed write is raised here, before anything else is written)
        writer.submit(shards.finish).result()
    shard, reused = shards.shard, shards.reused
    _remove_stale_shards(out, shard)
    remember_digests(out, shards.digests)  # the manifest's checksums: publishing reads none
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
    sizes = pc.binary_length(text)
    if (largest := pc.max(sizes).as_py() or 0) > MAX_DOCUMENT_BYTES:
        row = pc.index(sizes, largest).as_py()
        raise InputError(too_big(f"{dataset} {batch.column('ref')[row].as_py()}", largest))
    null = pc.is_null(text)
    blank = pc.or_(pc.equal(sizes, scalar(0)), pc.utf8_is_space(text))
    empty = pc.and_(pc.invert(null), blank)
    dropped = 0
    for reason, mask in (("null_text", null), ("empty", empty)):
        if n := int(pc.sum(mask).as_py() or 0):
            counts.skip(reason, n)
            dropped += n
    if dropped:  # (filtering copies every text: only when something goes)
        batch = batch.filter(pc.invert(pc.or_(null, empty)))
    ref = batch.column("ref")
    derived = pc.binary_join_element_wise(scalar(dataset), ref, scalar(":"))
    doc_id = pc.coalesce(batch.column("id"), derived)
    source = pa.repeat(scalar(dataset), len(batch))
    return pa.Table.from_arrays([doc_id, batch.column("text"), source, ref], schema=SCHEMA)


class ShardWriter:
    """Shards of `docs_per_shard` documents, written row group by row group as documents
    arrive. Row groups are cut greedily from each shard's start, so a shard's bytes depend
    only on its documents; a shard already sealed (resume) is skipped, not rewritten."""

    def __init__(self, out: Path, layout: Layout) -> None:
        self.out, self.layout = out, layout
        self.shard = self.reused = self.in_shard = 0
        self.sealed = False
        self.digests: dict[str, str] = {}  # shard name -> checksum, as written or verified
        self.buffer: pa.Table | None = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, rows: pa.Table) -> None:
        while len(rows):
            if self.in_shard == 0:
                self._open()
            part = rows.slice(0, self.layout.docs_per_shard - self.in_shard)
            rows = rows.slice(len(part))
            self.in_shard += len(part)
            if not self.sealed:
                self.buffer = part if self.buffer is None else pa.concat_tables([self.buffer, part])
                self._write_groups(last=self.in_shard == self.layout.docs_per_shard)
            if self.in_shard == self.layout.docs_per_shard:
                self._close()

    def finish(self) -> None:
        if self.in_shard:
            if not self.sealed:
                self._write_groups(last=True)
            self._close()

    def _open(self) -> None:
        receipt = _sealed_receipt(self.out, self.shard)
        self.sealed = receipt is not None
        if receipt and CHECKSUM in receipt:
            self.digests[shard_name(self.shard)] = receipt[CHECKSUM]
        if not self.sealed:
            self.tmp = (self.out / shard_name(self.shard)).with_suffix(".parquet.tmp")
            options = SHARD_OPTIONS | {"compression": self.layout.compression}
            with writing(self.tmp):
                self.file = ChecksummedFile(self.tmp)
                self.writer = pq.ParquetWriter(self.file, SCHEMA, **options)

    def _write_groups(self, last: bool) -> None:
        groups = list(_row_groups(self.buffer, self.layout.docs_per_row_group))
        if not last:
            groups = groups[:-1]  # the last group may grow with the next rows
        with writing(self.tmp):
            for start, n in groups:
                self.writer.write_table(self.buffer.slice(start, n))
                maybe_die("download.row_group")
        done = sum(n for _, n in groups)
        self.buffer = self.buffer.slice(done) if done < len(self.buffer) else None

    def _close(self) -> None:
        if self.sealed:
            self.reused += 1
        else:
            with writing(self.tmp):
                self.writer.close()
                self.file.close()
            digest = self.file.checksum()
            _seal(self.out, self.shard, self.tmp, self.in_shard, digest)
            self.digests[shard_name(self.shard)] = digest
        self.shard, self.in_shard, self.writer, self.buffer = self.shard + 1, 0, None, None


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _receipt(out: Path, i: int) -> Path:
    return out / f".{shard_name(i)}.done"


def _sealed_receipt(out: Path, i: int) -> dict[str, Any] | None:
    """A shard's receipt if the shard counts as written: the receipt exists and the shard's
    checksum still matches it."""
    path, receipt = out / shard_name(i), read_json(_receipt(out, i))
    return receipt if receipt and path.is_file() and file_matches(path, receipt) else None


def _seal(out: Path, i: int, tmp: Path, docs: int, digest: str) -> None:
    maybe_die("download.shard_tmp")
    tmp.replace(out / shard_name(i))
    maybe_die("download.shard_written")
    atomic_write_json(_receipt(out, i), {CHECKSUM: digest, "docs": docs})
    maybe_die("download.shard_sealed")


def _row_groups(rows: pa.Table, per_group: int) -> Iterator[tuple[int, int]]:
    """(start, length) of row groups of at most `per_group` docs or BYTES_PER_ROW_GROUP of
    text (a group closes with the document that reaches that size). One step per group, not
    per document: this runs beside the encoder and the imports, which want the interpreter."""
    ends = np.cumsum(int_values(pc.binary_length(rows.column("text")).combine_chunks()))
    start = 0
    while start < len(rows):
        base = int(ends[start - 1]) if start else 0
        by_bytes = int(np.searchsorted(ends, base + BYTES_PER_ROW_GROUP))  # first to reach it
        last = min(by_bytes, start + per_group - 1, len(rows) - 1)
        yield start, last + 1 - start
        start = last + 1


def _remove_stale_shards(out: Path, n: int) -> None:
    """Drop shards past the end (left by an earlier attempt with more documents)."""
    for path in out.glob("part-*.parquet*"):
        if int(path.name[5:10]) >= n:
            path.unlink()
    for path in out.glob(".part-*.parquet.done"):
        if int(path.name[6:11]) >= n:
            path.unlink()
