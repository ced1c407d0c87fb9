"""`pipe download`: every source format to Parquet, cached by content, errors a user can act on."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_tokenizer, pipe, write_jsonl


def _blend(tmp_path: Path, *datasets: dict, tokenizer: str = "tok") -> Path:
    path = tmp_path / "blend.json"
    path.write_text(json.dumps({"name": "t", "tokenizer": tokenizer, "datasets": list(datasets)}))
    return path


def _rows(result_json: dict) -> list[dict]:
    shards = sorted(Path(result_json["path"]).glob("*.parquet"))
    return pq.read_table(shards).to_pylist()


def test_each_format_becomes_parquet_with_id_text_source(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl.gz", 30, 1, "a")
    pq.write_table(
        pa.table({"doc": ["first doc", "second doc"], "id": ["p1", "p2"]}), tmp_path / "b.parquet"
    )
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "one.txt").write_text("a whole file is one document\n")
    (tmp_path / "txt" / "two.txt").write_text("another one\n")
    blend = _blend(
        tmp_path,
        {"name": "a", "weight": 1, "files": "a.jsonl.gz"},
        {"name": "b", "weight": 1, "files": "b.parquet", "text_field": "doc"},
        {"name": "c", "weight": 1, "files": "txt/*.txt"},
    )
    res = pipe("download", "--blend", blend, "--json", cache=tmp_path / "cache")
    assert res.code == 0, res.err
    by_name = {d["name"]: d for d in res.json["datasets"]}
    a, b, c = (_rows(by_name[n]) for n in "abc")
    assert len(a) == 30 and a[0]["id"] == "a-0" and a[0]["source"] == "a"
    assert a[0]["source_ref"].endswith("a.jsonl.gz:1")
    assert [r["text"] for r in b] == ["first doc", "second doc"] and b[1]["id"] == "p2"
    assert [r["id"] for r in c] == ["one.txt", "two.txt"]
    assert set(a[0]) == {"id", "text", "source", "source_ref"}


def test_hf_source_streams_through_datasets_from_a_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    pq.write_table(
        pa.table({"text": [f"hub doc {i}" for i in range(12)]}), folder / "train.parquet"
    )
    blend = _blend(tmp_path, {"name": "h", "weight": 1, "hf": {"path": "hub", "split": "train"}})
    res = pipe("download", "--blend", blend, "--limit", 5, "--json", cache=tmp_path / "cache")
    assert res.code == 0, res.err
    rows = _rows(res.json)
    assert [r["text"] for r in rows] == [f"hub doc {i}" for i in range(5)]
    manifest = json.loads((Path(res.json["path"]) / "manifest.json").read_text())
    assert manifest["stats"]["source"] == [str(folder)]
    assert [f["name"] for f in manifest["inputs"]] == ["train.parquet"]


def test_cache_reuse_force_and_key_change_on_edit(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", 20, 1, "a")
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": "a.jsonl"})
    cache = tmp_path / "cache"
    first = pipe("download", "--blend", blend, "--json", cache=cache).json
    again = pipe("download", "--blend", blend, "--json", cache=cache).json
    assert again["reused"] and again["artifact"] == first["artifact"]
    forced = pipe("download", "--blend", blend, "--json", "--force", cache=cache).json
    assert not forced["reused"] and forced["artifact"] == first["artifact"]
    limited = pipe("download", "--blend", blend, "--json", "--limit", 5, cache=cache).json
    assert limited["artifact"] != first["artifact"] and len(_rows(limited)) == 5
    with open(src, "a") as f:
        f.write(json.dumps({"id": "new", "text": "one more document"}) + "\n")
    edited = pipe("download", "--blend", blend, "--json", cache=cache).json
    assert not edited["reused"] and edited["artifact"] != first["artifact"]
    assert len(_rows(edited)) == 21
    manifest = json.loads((Path(edited["path"]) / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] and manifest["files"]["part-00000.parquet"]["xxh3"]


def test_empty_documents_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "text": "kept"},
        {"id": 2, "text": ""},
        {"id": 3, "text": "   \n\t"},
        {"id": 4, "text": None},
        {"id": 5, "text": "also kept"},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": "a.jsonl"})
    res = pipe("download", "--blend", blend, "--json", cache=tmp_path / "cache")
    assert res.code == 0, res.err
    stats = json.loads((Path(res.json["path"]) / "manifest.json").read_text())["stats"]
    assert stats["docs"] == 2 and stats["skipped"] == {"empty": 3, "null_text": 1}
    assert [r["text"] for r in _rows(res.json)] == ["kept", "also kept"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", b'{"text": "ok"}\n{"text": oops}\n', "bad.jsonl:2: malformed JSON"),
        ("utf.jsonl", b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', "utf.jsonl:2: not valid UTF-8"),
        (
            "field.jsonl",
            b'{"body": "x", "id": 1}\n',
            "field.jsonl:1: no text field 'text'; fields present: body, id",
        ),
        ("num.jsonl", b'{"text": 42}\n', "num.jsonl:1: text field is int, not a string"),
        ("trunc.jsonl.gz", None, "trunc.jsonl.gz: truncated or corrupt gzip"),
        ("bad.parquet", b"PAR1 this is not parquet", "bad.parquet: not a readable Parquet file"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is None:
        data = gzip.compress(
            b"".join(json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(2000))
        )
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": name})
    res = pipe("download", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1
    assert "Traceback" not in res.err and res.err.count("\n") == 1, res.err
    assert expected in res.err
    assert not list((tmp_path / "cache").glob("download/*/manifest.json"))


def test_missing_path_and_unknown_tokenizer(tmp_path: Path) -> None:
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": "nothing/*.jsonl"})
    res = pipe("download", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1 and "nothing/*.jsonl: no such file" in res.err
    write_jsonl(tmp_path / "a.jsonl", 5, 1, "a")
    blend = _blend(
        tmp_path,
        {"name": "a", "weight": 1, "files": "a.jsonl"},
        tokenizer="no-such-org/no-such-tokenizer",
    )
    res = pipe("tokenize", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1 and "Traceback" not in res.err
    assert "tokenizer 'no-such-org/no-such-tokenizer': not a local folder" in res.err
    res = pipe(
        "tokenize", "--blend", blend, "--tokenizer", tmp_path / "nope", cache=tmp_path / "cache"
    )
    assert res.code == 1 and "no such folder" in res.err


def test_tokenizer_folder_without_tokenizer_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", 5, 1, "a")
    (tmp_path / "empty").mkdir()
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": "a.jsonl"}, tokenizer="empty")
    res = pipe("tokenize", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1 and "has no tokenizer files" in res.err


def test_cache_dir_from_environment(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", 5, 1, "a")
    make_tokenizer(tmp_path / "tok")
    blend = _blend(tmp_path, {"name": "a", "weight": 1, "files": "a.jsonl"})
    env_cache = tmp_path / "env-cache"
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "download", "--blend", str(blend), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIPE_CACHE": str(env_cache)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["path"].startswith(str(env_cache))


def test_jsonl_blocks_keep_every_line_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole-line blocks (lines counted, not split) keep blank lines as empty documents on
    their own line numbers, and a last line without a newline, across block boundaries, all
    through arrow's reader (the line-by-line reader is never needed here)."""
    from stages import readers

    lines = ['{"id": "x", "text": "a"}', "", '{"text": "b"}', "   ", '{"id": "7", "text": "c"}']
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join(lines * 60_000))  # 1.9 MB: read 1 MiB at a time
    original = readers._line_blocks
    monkeypatch.setattr(readers, "_line_blocks", lambda p: original(p, block=16 << 10))
    monkeypatch.setattr(readers, "_parse_lines", None)  # calling it would fail the test
    tables = list(readers._read_jsonl(path, "f.jsonl", "text", "id"))
    rows = [r for t in tables for r in t.to_pylist()]
    assert len(tables) >= 3 and len(rows) == 300_000  # cut into several blocks
    assert [r["text"] for r in rows[:5]] == ["a", "", "b", "", "c"]
    assert [r["id"] for r in rows[:5]] == ["x", None, None, None, "7"]
    assert [r["ref"] for r in rows] == [f"f.jsonl:{n}" for n in range(1, 300_001)]


def test_row_groups_cut_per_group_as_the_per_document_rule_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Row groups close with the document that reaches the byte size or the document count,
    found one group at a time; checked against the rule walked document by document."""
    import random

    from stages import download

    def by_document(sizes: list[int], per_group: int, limit: int) -> list[tuple[int, int]]:
        out, start, size = [], 0, 0
        for k, n in enumerate(sizes):
            size += n
            if k + 1 - start >= per_group or size >= limit:
                out.append((start, k + 1 - start))
                start, size = k + 1, 0
        return out + ([(start, len(sizes) - start)] if start < len(sizes) else [])

    rng = random.Random(0)
    for _ in range(500):
        sizes = [rng.choice([0, 1, 3, 10, 25, 60]) for _ in range(rng.randint(0, 60))]
        limit, per_group = rng.randint(1, 50), rng.randint(1, 20)
        monkeypatch.setattr(download, "BYTES_PER_ROW_GROUP", limit)
        parts = (sizes[: len(sizes) // 2], sizes[len(sizes) // 2 :])
        text = pa.chunked_array([pa.array(["x" * n for n in p], pa.string()) for p in parts])
        got = list(download._row_groups(pa.table({"text": text}), per_group))
        assert got == by_document(sizes, per_group, limit), (sizes, per_group, limit)
