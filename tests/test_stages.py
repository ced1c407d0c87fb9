"""Stages and the cache path called directly, without the CLI (each as pipeline/run.py does)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl

from pipeline.artifact import Request
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.progress import Display
from stages import download, megatron_blend, tokenize
from stages.encoder import engine_key, tokenizer_facts
from stages.readers import read_files
from util.errors import InputError


def _ctx() -> Context:
    return Context(Display(quiet=True))


# ---- the one cache path -----------------------------------------------------------------------
def test_ensure_builds_once_then_reuses(tmp_path: Path) -> None:
    cache, calls = Cache(tmp_path), []

    def build(work: Path) -> dict:
        calls.append(work)
        (work / "out.txt").write_text("x" * 10)
        return {"docs": 1}

    req = Request("demo", 1, "d", {"a": 1})
    first = cache.ensure(req, build, say=lambda m: None)
    again = cache.ensure(req, build, say=lambda m: None)
    assert (first.reused, again.reused) == (False, True) and len(calls) == 1
    assert again.artifact.manifest["files"]["out.txt"]["bytes"] == 10
    assert first.stats["docs"] == 1 and "seconds" in first.stats
    forced = cache.ensure(req, build, force=True, say=lambda m: None)
    assert not forced.reused and len(calls) == 2 and forced.key == first.key


def test_ensure_rebuilds_a_damaged_artifact_and_says_so(tmp_path: Path) -> None:
    cache, said = Cache(tmp_path), []

    def build(work: Path) -> dict:
        (work / "out.txt").write_text("hello")
        return {}

    req = Request("demo", 1, "d", {})
    art = cache.ensure(req, build, say=said.append).artifact
    (art.path / "out.txt").write_text("hel")  # truncated
    again = cache.ensure(req, build, say=said.append)
    assert not again.reused and (again.path / "out.txt").read_text() == "hello"
    assert "damaged in the cache (out.txt has 3 bytes, the manifest says 5)" in said[0]


def test_unfinished_builds_stay_in_work_and_resume(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def build(work: Path) -> dict:
        step = len(list(work.glob("step-*")))
        (work / f"step-{step}").write_text("")
        return {"steps": step + 1} | ({} if step else {"unfinished": True})

    req = Request("demo", 1, "d", {})
    first = cache.ensure(req, build, say=print)
    assert first.artifact is None and first.path == tmp_path / ".work" / req.key
    assert cache.get("demo", req.key) is None
    second = cache.ensure(req, build, say=print)
    assert second.artifact is not None and second.stats["steps"] == 2  # kept the first step


def test_keys_change_with_config_parents_inputs_and_version() -> None:
    base = Request("s", 1, "n", {"a": 1}, ("p",), {"f": 1})
    variants = [
        Request("s", 2, "n", {"a": 1}, ("p",), {"f": 1}),
        Request("s", 1, "n", {"a": 2}, ("p",), {"f": 1}),
        Request("s", 1, "n", {"a": 1}, ("q",), {"f": 1}),
        Request("s", 1, "n", {"a": 1}, ("p",), {"f": 2}),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 5
    assert Request("s", 1, "other name", {"a": 1}, ("p",), {"f": 1}).key == base.key


# ---- download's readers and shard writer ----------------------------------------------------
def test_readers_name_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl.gz"
    with gzip.open(good, "wt") as f:
        f.write(json.dumps({"id": 1, "text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
    txt = tmp_path / "b.txt"
    txt.write_text("whole file")
    rows = [
        row
        for path, fmt in ((good, "jsonl"), (txt, "txt"))
        for batch in read_files([path], fmt, "text", "id")
        for row in batch.to_pylist()
    ]
    assert rows == [
        {"id": "1", "text": "one", "ref": "a.jsonl.gz:1"},
        {"id": None, "text": "two", "ref": "a.jsonl.gz:2"},
        {"id": "b.txt", "text": "whole file", "ref": "b.txt:1"},
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        list(read_files([bad], "jsonl", "text", "id"))


def _download(tmp_path: Path, n: int = 120) -> tuple[Cache, object]:
    data = write_jsonl(tmp_path / "d.jsonl", n, 3, "doc")
    cache = Cache(tmp_path / "cache")
    config = {
        "dataset": "d",
        "text_field": "text",
        "id_field": "id",
        "limit": None,
        "format": "jsonl",
        "docs_per_shard": 50,
        "docs_per_row_group": 20,
    }
    req = Request(download.NAME, download.VERSION, "d", config)
    runtime = {"files": [str(data)]}
    out = cache.ensure(req, lambda w: download.build([], config | runtime, w, _ctx()), say=print)
    return cache, out.artifact


def test_download_build_writes_shards_of_the_layout(tmp_path: Path) -> None:
    _, art = _download(tmp_path)
    assert art.manifest["stats"]["docs"] == 120 and art.manifest["stats"]["shards"] == 3
    import pyarrow.parquet as pq

    groups = [pq.ParquetFile(p).metadata.num_row_groups for p in sorted(art.path.glob("*.parquet"))]
    assert groups == [3, 3, 1]


def test_download_beside_a_warm_up_runs_in_its_own_process_to_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a warm-up holds a thread of this process, the download runs in a child process
    (util/child.py); its shards, receipts, stats and progress are those of a download here."""
    import threading

    from util import child

    children = []
    original = child.call_in_child
    monkeypatch.setattr(download, "call_in_child", lambda *a: children.append(a) or original(*a))
    data = write_jsonl(tmp_path / "d.jsonl", 120, 3, "doc")
    config = {"dataset": "d", "text_field": "text", "id_field": "id", "limit": None}
    config |= {"format": "jsonl", "docs_per_shard": 50, "docs_per_row_group": 20}
    config["files"] = [str(data)]
    results = {}
    for warming in (False, True):
        ctx, release = _ctx(), threading.Event()
        if warming:
            ctx.warm_up(release.wait)
        progress: list[tuple[int, int]] = []
        monkeypatch.setattr(ctx, "bar", lambda *a, seen=progress: _Bar(seen))
        work = tmp_path / f"work-{warming}"
        stats = download.build([], config, work, ctx)
        release.set()
        files = {p.name: p.read_bytes() for p in sorted(work.iterdir())}
        digests = json.loads(files.pop(".checksums.json"))  # (with each shard's mtime)
        files |= {f"{name} xxh3": d["xxh3"] for name, d in digests.items()}
        results[warming] = stats, files, progress
        assert len(children) == int(warming)
    assert results[True] == results[False]
    assert sum(d for d, _ in results[True][2]) == 120


class _Bar:
    def __init__(self, seen: list[tuple[int, int]]) -> None:
        self.seen = seen

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def advance(self, docs: int, units: int) -> None:
        self.seen.append((docs, units))


# ---- tokenize's build and merge -------------------------------------------------------------
def _tokenize_config(tokenizer: Path) -> dict:
    """The tokenize config of `_download`'s dataset."""
    return {
        "dataset": "d",
        "valid": 0.05,
        "test": 0.05,
        "limit": None,
        "tokenizer_sha256": "x",
        "engine": engine_key("auto"),
        "tokenizer": str(tokenizer),
    }


def test_tokenize_build_and_megatron_blend(tmp_path: Path, small_tokenizer: Path) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from tokenizers import Tokenizer

    cache, source = _download(tmp_path)
    where = str(small_tokenizer)
    config = _tokenize_config(small_tokenizer)
    req = Request(tokenize.NAME, tokenize.VERSION, "d", config, (source.key,))
    art = cache.ensure(req, lambda w: tokenize.build([source], config, w, _ctx()), say=print)
    stats = art.stats
    assert sum(stats[s]["docs"] for s in ("train", "valid", "test")) == 120
    assert stats["tokenizer"]["eod_id"] == tokenizer_facts(where)["eod_id"] == 2
    assert not (art.path / "chunks").exists()  # merged, then dropped
    tok = Tokenizer.from_file(str(small_tokenizer / "tokenizer.json"))
    import pyarrow.parquet as pq

    texts = {
        r["id"]: r["text"] for r in pq.read_table(sorted(source.path.glob("*.parquet"))).to_pylist()
    }
    ds = IndexedDataset(str(art.path / "train"))
    assert len(ds) == stats["train"]["docs"]
    first = ds[0].tolist()
    want = [tok.encode(t, add_special_tokens=False).ids + [2] for t in texts.values()]
    assert first in want and all(ds[i][-1] == 2 for i in range(len(ds)))
    assert int(np.sum(ds.sequence_lengths)) == stats["train"]["tokens"]
    blend_cfg = {
        "name": "b",
        "weights": {"d": 1.0},
        "split": {"valid": 0.05, "test": 0.05},
        "blend_file": str(tmp_path / "d.jsonl"),
    }
    breq = Request(megatron_blend.NAME, megatron_blend.VERSION, "b", blend_cfg, (art.key,))
    blend = cache.ensure(
        breq, lambda w: megatron_blend.build([art.artifact], blend_cfg, w, _ctx()), say=print
    )
    per_split = json.loads((blend.path / "blend.json").read_text())
    assert per_split["train"] == [1.0, str(art.path / "train")]


def test_chunks_encoded_at_once_are_written_in_corpus_order(
    tmp_path: Path, small_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several chunks encoding at once, a chunk that finishes early still waits its turn:
    the files are those of one chunk at a time, even when the first encode is the slowest."""
    import threading
    import time

    from stages import chunks as ch

    cache, source = _download(tmp_path)
    monkeypatch.setattr(ch, "CHUNK_BYTES", 1)  # a chunk per row group: 7 of them
    config = _tokenize_config(small_tokenizer)
    real_encoder_for, calls, lock = tokenize.encoder_for, [], threading.Lock()

    class FirstIsSlow:
        """The engine, but its first encode returns last."""

        def __init__(self, engine: object) -> None:
            self.engine = engine

        def encode(self, texts: object) -> object:
            with lock:
                calls.append(time.monotonic())
                first = len(calls) == 1
            time.sleep(0.5 if first else 0)
            return self.engine.encode(texts)

        def __getattr__(self, name: str) -> object:
            return getattr(self.engine, name)

    def built(in_flight: int, slow: bool) -> dict[str, bytes]:
        monkeypatch.setattr(tokenize, "ENCODES_IN_FLIGHT", in_flight)
        monkeypatch.setattr(
            tokenize,
            "encoder_for",
            lambda *a: FirstIsSlow(real_encoder_for(*a)) if slow else real_encoder_for(*a),
        )
        out = tmp_path / f"work-{in_flight}"
        tokenize.build([source], config, out, _ctx())
        return {p.name: p.read_bytes() for p in sorted(out.glob("*.[bi][id][nx]"))}

    one_at_a_time = built(1, slow=False)
    calls.clear()
    assert built(3, slow=True) == one_at_a_time and one_at_a_time
    assert len(calls) == 7 and calls[2] - calls[0] < 0.4  # the third began before the first ended


def test_chunks_are_read_while_the_engine_loads(
    tmp_path: Path, small_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading starts before the engine and megatron-core are in: an engine load that waits
    for a chunk to be read still finishes (with the reader started after the load, it would
    wait forever)."""
    import threading

    from stages import chunks as ch

    cache, source = _download(tmp_path)
    monkeypatch.setattr(ch, "CHUNK_BYTES", 1)
    read = threading.Event()
    real_load, real_encoder_for = tokenize.load, tokenize.encoder_for

    def load(chunk: ch.Chunk) -> object:
        loaded = real_load(chunk)
        read.set()
        return loaded

    def encoder_for(*args: object) -> object:
        assert read.wait(20), "no chunk was read while the engine loaded"
        return real_encoder_for(*args)

    monkeypatch.setattr(tokenize, "load", load)
    monkeypatch.setattr(tokenize, "encoder_for", encoder_for)
    stats = tokenize.build([source], _tokenize_config(small_tokenizer), tmp_path / "w", _ctx())
    assert sum(stats[s]["docs"] for s in ("train", "valid", "test")) == 120


def test_split_plan_reads_ids_only_until_nothing_can_be_forced(tmp_path: Path) -> None:
    """A dataset with valid and test documents in its first batch: the plan is the full read's
    (nothing forced) and the next file is never opened."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages.splits import plan_splits

    first = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(5000)]}), first)
    opened: list[Path] = []

    def files():
        for path in (first, tmp_path / "missing.parquet"):
            opened.append(path)
            yield path

    plan = plan_splits(files(), 0.01, 0.01)
    assert plan.forced == {} and opened == [first]
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"id": ["x", "y", "z"]}), small)
    assert set(plan_splits([small], 0.01, 0.01).forced.values()) == {"valid", "test"}


def test_chunks_gather_whole_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are consecutive whole row groups of one file, in corpus order, closed once they
    hold CHUNK_BYTES (or at the file's end); every row group is in exactly one chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stages import chunks as ch

    files = []
    for f in range(3):
        path = tmp_path / f"part-{f:05d}.parquet"
        text = pa.array(["x" * 1000] * 400)
        pq.write_table(pa.table({"text": text}), path, row_group_size=10)  # 40 groups
        files.append(path)
    group = pq.ParquetFile(files[0]).metadata.row_group(0).total_byte_size
    for cap, sizes in ((3 * group, [3] * 13 + [1]), (group, [1] * 40), (1 << 40, [40])):
        monkeypatch.setattr(ch, "CHUNK_BYTES", cap)
        got = ch.list_chunks(files)
        assert [c.row_groups for c in got] == sizes * 3, cap
        covered = [(c.file, g) for c in got for g in range(c.row_group, c.row_group + c.row_groups)]
        assert covered == [(str(p), g) for p in files for g in range(40)]
