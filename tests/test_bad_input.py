"""Bad input through the real CLI: every case ends in one clear line naming the file (and line)
and exit code 1, or in a skip counted in the artifact's stats; never a traceback, never a
half-published artifact. Also disk full, an unwritable cache and read-only input."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import _selfmade_corpus, make_text, make_tokenizer, write_jsonl
from reliability import Run, run, snapshot

from pipeline.cache import Cache


def _blend(folder: Path, files: str, fmt: str | None = None, **split: float) -> Path:
    spec: dict = {"name": "bad", "files": files, "weight": 1.0}
    if fmt:
        spec["format"] = fmt
    blend = folder / "blend.json"
    blend.write_text(
        json.dumps(
            {
                "name": "bad",
                "tokenizer": str(folder / "tok"),
                "split": split or {"valid": 0.005, "test": 0.005},
                "datasets": [spec],
            }
        )
    )
    return blend


def _lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _doc(i: int, text: object = None, **extra: object) -> bytes:
    obj = {"id": f"d{i}", "text": f"document number {i} here" if text is None else text}
    return json.dumps(obj | extra).encode()


def _fails(res: Run, cache: Path, *parts: str) -> str:
    """Exit 1, one `error:` line containing every part, no traceback, nothing published."""
    assert res.code == 1, (res.code, res.out, res.err)
    assert "Traceback" not in res.err, res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.err
    for part in parts:
        assert part in errors[0], (part, errors[0])
    assert Cache(cache).all() == [], "a failed run published an artifact"
    return errors[0]


def _download(blend: Path, cache: Path, *args: object) -> Run:
    return run(["download", "--blend", blend, "--quiet", "--json", *args], cache)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1), _doc(2), b'{"id": "d3", "text": "unclosed'])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{data}:3: malformed JSON")


def test_json_that_is_not_an_object_names_file_and_line(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1), b'["a", "list"]'])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{data}:2: expected a JSON object per line, got list")


def test_truncated_gzip_names_file_and_last_good_line(tmp_path: Path) -> None:
    full = write_jsonl(tmp_path / "full.jsonl.gz", 3000, 5, "g")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    res = _download(_blend(tmp_path, str(cut)), tmp_path / "cache")
    line = _fails(res, tmp_path / "cache", f"{cut}: truncated or corrupt gzip after line")
    assert int(line.split("after line ")[1].split()[0]) > 100  # it read up to the damage


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1), b'{"id": "d2", "text": "caf\xe9"}'])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{data}:2: not valid UTF-8")
    txt = tmp_path / "t"
    txt.mkdir()
    (txt / "a.txt").write_bytes(b"fine\nalso fine\nbad \xff here\n")
    res = _download(_blend(tmp_path, str(txt / "*.txt"), "txt"), tmp_path / "cache2")
    _fails(res, tmp_path / "cache2", f"{txt / 'a.txt'}:3: not valid UTF-8")


def test_missing_text_field_names_file_line_and_fields(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1), b'{"id": "d2", "body": "x"}'])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{data}:2: no text field 'text'; fields present: id, body")


def test_non_string_text_names_file_and_line(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1), _doc(2, text=17)])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{data}:2: text field is int, not a string")


def test_empty_whitespace_and_null_documents_are_counted_skips(tmp_path: Path) -> None:
    lines = [_doc(1), _doc(2, text=""), _doc(3, text="  \n\t "), b"", b"   ", _doc(4)]
    lines += [b'{"id": "d5", "text": null}', _doc(6)]
    data = _lines(tmp_path / "d.jsonl", lines)
    res = run(["download", "--blend", _blend(tmp_path, str(data)), "--json"], tmp_path / "cache")
    assert res.code == 0, res.err
    stats = Cache(tmp_path / "cache").find(res.json["artifact"]).manifest["stats"]
    assert stats["docs"] == 3
    assert stats["skipped"] == {"empty": 4, "null_text": 1}
    row = next(line for line in res.err.splitlines() if "│ bad " in line)
    assert row.split("│")[6].strip() == "5"  # the summary table shows the skips too


def test_dataset_left_empty_is_an_error_with_the_skip_counts(tmp_path: Path) -> None:
    data = _lines(tmp_path / "d.jsonl", [_doc(1, text=" "), _doc(2, text=""), b""])
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache", "--limit", 2)
    _fails(
        res, tmp_path / "cache", f"dataset 'bad': no documents to keep in {data} (skipped: empty=3)"
    )


def test_unreadable_parquet_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "d.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    res = _download(_blend(tmp_path, str(bad)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{bad}: not a readable Parquet file")
    good = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), good)
    res = _download(_blend(tmp_path, str(good)), tmp_path / "cache2")
    _fails(res, tmp_path / "cache2", f"{good}: no text field 'text'; columns present: id, body")


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    rng = random.Random(3)
    texts = [make_text(rng, 30) for _ in range(3000)]
    pq.write_table(
        pa.table({"id": [str(i) for i in range(3000)], "text": texts}), whole, row_group_size=500
    )
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # footer gone
    res = _download(_blend(tmp_path, str(cut)), tmp_path / "cache")
    _fails(res, tmp_path / "cache", f"{cut}: not a readable Parquet file")


def test_a_50_mb_document_is_kept_whole(tmp_path: Path) -> None:
    rng = random.Random(9)
    words = [make_text(rng, 50) for _ in range(200)]
    big = " ".join(words)
    big = (big * (50_000_000 // len(big) + 1))[:50_000_000]
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"id": "small", "text": "a small one"})
        + "\n"
        + json.dumps({"id": "big", "text": big})
        + "\n"
    )
    res = _download(_blend(tmp_path, str(data)), tmp_path / "cache")
    assert res.code == 0, res.err
    art = Cache(tmp_path / "cache").find(res.json["artifact"])
    assert art.manifest["stats"]["docs"] == 2
    assert art.manifest["stats"]["chars"] == 50_000_000 + len("a small one")
    table = pq.read_table(sorted(art.path.glob("*.parquet")))
    assert table.column("text").to_pylist()[1] == big


def test_zero_length_split_is_refused_before_publishing_a_blend(tmp_path: Path) -> None:
    """Two documents cannot fill train, valid and test: a clear error, no blend.json."""
    make_tokenizer(tmp_path / "tok")
    data = write_jsonl(tmp_path / "d.jsonl", 50, 4, "z")
    blend = _blend(tmp_path, str(data))
    cache = tmp_path / "cache"
    res = run(["tokenize", "--blend", blend, "--quiet", "--limit", 2, "--workers", 1], cache)
    assert res.code == 1, res.err
    assert "Traceback" not in res.err
    assert f"split 'valid' has no documents in any dataset of {blend}" in " ".join(res.err.split())
    assert "raise --limit or set split.valid to 0" in " ".join(res.err.split())
    assert [a.stage for a in Cache(cache).all()] == ["download", "tokenize"]  # whole, no blend


# ---- the file system: disk full, unwritable cache, read-only input -------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 300 KiB tmpfs (root only): a disk that fills up for real."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_disk_full_is_one_clear_error_and_resumes_once_there_is_room(
    tmpfs: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "d.jsonl", 3000, 6, "f")
    blend = _blend(tmp_path, str(data / "d.jsonl"))
    env = {"PIPE_DOCS_PER_SHARD": "300"}
    full = run(["download", "--blend", blend, "--quiet"], tmpfs, env=env)
    line = _fails(full, tmpfs, "No space left on device")
    assert str(tmpfs) in line, line  # names where it could not write
    subprocess.run(["mount", "-o", "remount,size=16m", str(tmpfs)], check=True)
    resumed = run(["download", "--blend", blend, "--quiet"], tmpfs, env=env)
    assert resumed.code == 0, resumed.err
    assert "resumed," in resumed.err  # the shards written before the disk filled were kept
    fresh = run(["download", "--blend", blend, "--quiet"], tmp_path / "fresh", env=env)
    assert fresh.code == 0, fresh.err
    assert snapshot(tmpfs) == snapshot(tmp_path / "fresh")


def test_disk_full_while_tokenizing_on_ray_is_one_clear_error(tmpfs: Path, tmp_path: Path) -> None:
    """The error raised inside a Ray worker reaches the user as one line naming the file."""
    corpus = _selfmade_corpus(tmp_path)
    subprocess.run(["mount", "-o", "remount,size=900k", str(tmpfs)], check=True)
    env = {"PIPE_SHARD_COMPRESSION": "zstd"}  # so that the shards fit and the tokens do not
    assert run(["download", "--blend", corpus.blend, "--quiet"], tmpfs, env=env).code == 0
    downloads = snapshot(tmpfs)
    args = ["tokenize", "--blend", corpus.blend, "--quiet", "--workers", 1]
    res = run([*args, "--ray-address", "local"], tmpfs, env=env)
    assert res.code == 1, res.err
    assert "Traceback" not in res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], res.err
    assert f"error: {tmpfs}/.work/" in errors[0]
    assert snapshot(tmpfs) == downloads  # no tokenize or blend artifact appeared


def test_unwritable_cache_dir_is_one_clear_error(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", 20, 1, "u")
    blend = _blend(tmp_path, str(data))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = _download(blend, blocker / "cache")
    assert res.code == 1 and "Traceback" not in res.err
    assert f"cache dir {blocker / 'cache'}: cannot create it" in res.err
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        res = _download(blend, ro)
        assert res.code == 1 and "Traceback" not in res.err
        assert f"cache dir {ro}: cannot create it (Read-only file system)" in res.err
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True)


def test_read_only_input_is_read_without_writing_to_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "d.jsonl.gz", 200, 2, "r")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(ro)]).returncode:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        res = _download(_blend(tmp_path, str(ro / "d.jsonl.gz")), tmp_path / "cache")
        assert res.code == 0, res.err
        assert Cache(tmp_path / "cache").find(res.json["artifact"]).manifest["stats"]["docs"] == 200
        assert sorted(p.name for p in ro.iterdir()) == ["d.jsonl.gz"]
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True)
