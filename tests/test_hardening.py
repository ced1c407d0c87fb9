"""Cases from an adversarial run (issue 11): each failed on the code before it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, Corpus, pipe, write_jsonl

from pipeline.cache import Cache


def _blend(
    folder: Path,
    files: str,
    tokenizer: str | None = None,
    split: dict | None = None,
    **extra: object,
) -> Path:
    blend = folder / "blend.json"
    body: dict = {"name": "h", "datasets": [{"name": "d", "files": files, **extra}]}
    if tokenizer:
        body["tokenizer"] = tokenizer
    if split is not None:
        body["split"] = split
    blend.write_text(json.dumps(body))
    return blend


def _tokenize_in_background(blend: Path, cache: Path, *args: str) -> subprocess.Popen:
    command = ["tokenize", "--blend", str(blend), "--cache-dir", str(cache), *args]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a command started at a terminal
        # Ctrl-C as a terminal delivers it, even when these tests run with SIGINT ignored (a
        # shell's background job, nohup), which children would inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _download(blend: Path, cache: Path, *args: object, cwd: Path | None = None):
    return pipe("download", "--blend", blend, "--json", *args, cache=cache, cwd=cwd)


def test_symlink_loop_reads_each_file_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_jsonl(data / f"f{i}.jsonl", 4, i, f"f{i}")
    (data / "loop").symlink_to(data, target_is_directory=True)
    res = _download(_blend(tmp_path, "data/**/*.jsonl"), tmp_path / "cache")
    assert res.code == 0, res.err
    stats = json.loads((Path(res.json["path"]) / "manifest.json").read_text())["stats"]
    assert (stats["files"], stats["docs"]) == (3, 12)


def test_utf8_bom_is_not_part_of_the_first_record(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"id": "x", "text": "first"}\n')
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfplain text")
    jsonl = _download(_blend(tmp_path, "a.jsonl"), tmp_path / "c1")
    txt = _download(_blend(tmp_path, "b.txt"), tmp_path / "c2")
    assert jsonl.code == 0 and txt.code == 0, jsonl.err + txt.err
    import pyarrow.parquet as pq

    texts = [
        pq.read_table(next(Path(r.json["path"]).glob("*.parquet"))).column("text").to_pylist()
        for r in (jsonl, txt)
    ]
    assert texts == [["first"], ["plain text"]]


def test_edit_with_size_and_mtime_restored_is_seen(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", 5, 1, "d")
    blend, cache = _blend(tmp_path, "d.jsonl"), tmp_path / "cache"
    first = _download(blend, cache)
    st = data.stat()
    body = data.read_bytes()
    data.write_bytes(body.replace(b"d-0", b"e-0"))  # same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = _download(blend, cache)
    assert first.code == second.code == 0
    assert second.json["artifact"] != first.json["artifact"] and not second.json["reused"]


def test_key_does_not_depend_on_how_the_path_is_spelled(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "d.jsonl", 6, 2, "d")
    (tmp_path / "link").symlink_to(corpus, target_is_directory=True)
    blends = tmp_path / "blends"
    blends.mkdir()
    cache = tmp_path / "cache"
    keys = set()
    for spelling in ("../corpus/d.jsonl", str(corpus / "d.jsonl"), "../link/d.jsonl"):
        blend = blends / "b.json"
        blend.write_text(json.dumps({"name": "b", "datasets": [{"name": "d", "files": spelling}]}))
        for path in (blend, Path("blends/b.json")):  # absolute, and relative to the cwd
            res = _download(path, cache, cwd=tmp_path)
            assert res.code == 0, res.err
            keys.add(res.json["artifact"])
    assert len(keys) == 1 and len(Cache(cache).all()) == 1


def test_missing_tokenizer_is_refused_before_any_download(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", 5, 1, "d")
    blend = _blend(tmp_path, "d.jsonl", tokenizer="./no-such-tokenizer")
    start = time.monotonic()
    res = pipe("tokenize", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1 and "no-such-tokenizer" in res.err and "no such folder" in res.err
    assert time.monotonic() - start < 10
    assert Cache(tmp_path / "cache").all() == []


def test_quiet_prints_no_table_and_empty_file_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", 5, 1, "d")
    res = pipe("download", "--blend", _blend(tmp_path, "d.jsonl"), "--quiet", cache=tmp_path / "c")
    assert res.code == 0 and res.err == ""
    (tmp_path / "empty.jsonl").write_text("")
    res = pipe("download", "--blend", _blend(tmp_path, "empty.jsonl"), cache=tmp_path / "c")
    assert res.code == 1 and str(tmp_path / "empty.jsonl") in res.err and "text" in res.err
    assert not any((tmp_path / "c" / ".work").iterdir())  # no empty folder left behind


def test_malformed_json_message_reads_once(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"text": "b",, }\n')
    res = _download(_blend(tmp_path, "d.jsonl"), tmp_path / "c")
    assert res.code == 1 and "d.jsonl:2: malformed JSON at column 14:" in res.err
    assert "at at" not in res.err


def test_artifacts_commands_on_a_missing_cache_fail(tmp_path: Path) -> None:
    res = pipe("artifacts", "ls", cache=tmp_path / "nope")
    assert res.code == 1 and "no artifact cache at" in res.err
    assert not (tmp_path / "nope").exists()


def test_rm_and_gc(small_tokenizer: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", 40, 1, "d")
    blend, cache = _blend(tmp_path, "d.jsonl", tokenizer=str(small_tokenizer)), tmp_path / "c"
    assert pipe("tokenize", "--blend", blend, "--quiet", cache=cache).code == 0
    arts = {a.stage: a for a in Cache(cache).all()}
    refused = pipe("artifacts", "rm", arts["download"].key, cache=cache)
    assert refused.code == 1 and f"is a parent of tokenize {arts['tokenize'].key}" in refused.err
    stale = cache / ".work" / "abandoned"
    stale.mkdir()
    (stale / "x").write_text("x")
    old = time.time() - 3 * 3600
    os.utime(stale / "x", (old, old))
    os.utime(stale, (old, old))
    dry = pipe("artifacts", "gc", "--older-than", 2, "--dry-run", cache=cache)
    assert dry.code == 0 and "would remove" in dry.out and stale.exists()
    done = pipe("artifacts", "gc", "--older-than", 2, cache=cache)
    assert done.code == 0 and not stale.exists()
    rm_blend = pipe("artifacts", "rm", arts["megatron_blend"].key, cache=cache)
    assert rm_blend.code == 0 and not arts["megatron_blend"].path.exists()
    orphans = pipe("artifacts", "gc", "--unreferenced", cache=cache)
    assert orphans.code == 0 and not arts["tokenize"].path.exists()
    # the download was still named by the tokenize artifact when gc looked: kept this round
    assert Cache(cache).get("download", arts["download"].key) is not None


@pytest.mark.parametrize("group", [False, True], ids=["pipe", "terminal"])
def test_ctrl_c_exits_130_and_says_how_to_resume(
    corpus: Corpus, tmp_path: Path, group: bool
) -> None:
    """As soon as the first build has begun (the download, in its own process while tokenize's
    imports run beside it), to pipe alone or, as a terminal does, to its whole process group."""
    proc = _tokenize_in_background(corpus.blend, tmp_path / "c")
    work = tmp_path / "c" / ".work"
    deadline = time.monotonic() + 60
    while not (work.is_dir() and any(work.iterdir())):  # interrupt mid-build
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err


def test_a_200_mb_document_tokenizes_in_bounded_memory(
    small_tokenizer: Path, tmp_path: Path
) -> None:
    """One 200 MB .txt document through the real CLI: the whole process tree stays far below
    the 4 GB bound (it is cut into pieces that tokenize alike; a chunk holds the one text)."""
    import random

    import psutil
    from conftest import make_text

    rng = random.Random(5)
    paragraph = "\n".join(make_text(rng, 40) for _ in range(50)) + "\n"
    big = tmp_path / "big.txt"
    with open(big, "w") as f:
        while f.tell() < 200 << 20:
            f.write(paragraph)
    blend = _blend(tmp_path, "big.txt", str(small_tokenizer), {"valid": 0, "test": 0}, format="txt")
    proc = _tokenize_in_background(blend, tmp_path / "c", "--quiet", "--json")
    tree, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)])
        except psutil.Error:
            continue
        peak = max(peak, rss)
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    stats = next(a for a in Cache(tmp_path / "c").all() if a.stage == "tokenize").manifest["stats"]
    assert stats["train"]["docs"] == 1 and stats["engine"]["pieces"] > 100
    assert peak < 4 << 30, f"peak RSS of the process tree {peak / 2**30:.2f} GiB"


def test_train_checks_its_options_before_any_data(tmp_path: Path) -> None:
    """A bad --nproc-per-node is refused at once, before the (missing) blend file is read."""
    start = time.monotonic()
    res = pipe(
        "train",
        "--blend",
        tmp_path / "missing.json",
        "--nproc-per-node",
        "abc",
        cache=tmp_path / "c",
    )
    assert res.code == 1 and "--nproc-per-node must be a number or 'auto'" in res.err
    assert "missing.json" not in res.err and time.monotonic() - start < 15


def test_a_document_over_the_limit_is_one_line_naming_file_and_limit(tmp_path: Path) -> None:
    """A 1 GB document (sparse: no disk used) is refused before it is read."""
    big = tmp_path / "huge.txt"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    start = time.monotonic()
    res = _download(_blend(tmp_path, "huge.txt", format="txt"), tmp_path / "c")
    assert res.code == 1 and "Traceback" not in res.err
    assert f"{big}: a document of 1,024 MiB is over pipe's limit of 512 MiB" in res.err
    assert time.monotonic() - start < 15


def test_progress_in_a_log_is_plain_lines(small_tokenizer: Path, tmp_path: Path) -> None:
    """Not a terminal (CI, Slurm, nohup): periodic plain lines with rates, no bar fragments."""
    write_jsonl(tmp_path / "d.jsonl", 200, 1, "d")
    blend = _blend(tmp_path, "d.jsonl", tokenizer=str(small_tokenizer))
    res = pipe("tokenize", "--blend", blend, cache=tmp_path / "c", env={"PIPE_PROGRESS_EVERY": "0"})
    assert res.code == 0, res.err
    lines = [line for line in res.err.splitlines() if " docs/s, " in line]
    assert any(line.startswith("download d: 200 docs") for line in lines), res.err
    assert any(line.startswith("tokenize d: 200/200 docs") for line in lines), res.err
    assert "\r" not in res.err and "━" not in "".join(lines)
