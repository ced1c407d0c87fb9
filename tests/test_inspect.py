"""`pipe inspect`: counts, length distribution and decoded documents, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import pipe, write_jsonl

from pipeline.cache import Cache


@pytest.fixture(scope="module")
def tokens(small_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("inspect")
    write_jsonl(tmp / "d.jsonl", 60, 4, "d")
    blend = tmp / "blend.json"
    body = {
        "name": "i",
        "tokenizer": str(small_tokenizer),
        "datasets": [{"name": "d", "files": "d.jsonl"}],
    }
    blend.write_text(json.dumps(body))
    assert pipe("tokenize", "--blend", blend, "--quiet", cache=tmp / "c").code == 0
    art = next(a for a in Cache(tmp / "c").all() if a.stage == "tokenize")
    return {"cache": tmp / "c", "art": art}


def test_inspect_decodes_documents_back_to_their_text(tokens: dict) -> None:
    art = tokens["art"]
    res = pipe("inspect", art.key[:8], "-n", 3, "--json", cache=tokens["cache"])
    assert res.code == 0, res.err
    report = res.json
    stats = art.manifest["stats"]["train"]
    assert (report["documents"], report["tokens"]) == (stats["docs"], stats["tokens"])
    assert report["length"]["min"] <= report["length"]["median"] <= report["length"]["max"]
    assert [d["index"] for d in report["docs"]][0] == 0 and len(report["docs"]) == 3
    (download,) = art.manifest["parents"]
    shard = next((tokens["cache"] / "download" / download).glob("*.parquet"))
    texts = set(pq.read_table(shard).column("text").to_pylist())
    for doc in report["docs"]:
        assert doc["ends_with_eod"] and doc["text"].endswith("</s>")
        assert doc["text"].removesuffix("</s>") in texts
    plain = pipe("inspect", art.key, "-n", 1, cache=tokens["cache"])
    assert plain.code == 0 and "ends with EOD" in plain.out and "median" in plain.out


def test_inspect_takes_a_prefix_and_errors_are_one_line(tokens: dict, tmp_path: Path) -> None:
    prefix = tokens["art"].path / "train"
    res = pipe("inspect", prefix, "--json", cache=tokens["cache"])
    assert res.code == 0 and res.json["prefix"] == str(prefix)
    wrong = pipe("inspect", "nokey", cache=tokens["cache"])
    assert wrong.code == 1 and wrong.err.count("\n") == 1 and "no artifact with key" in wrong.err
    copy = tmp_path / "cut"
    for ext in ("bin", "idx"):
        (copy.parent / f"cut.{ext}").write_bytes(Path(f"{prefix}.{ext}").read_bytes())
    with open(f"{copy}.bin", "r+b") as f:
        f.truncate(100)
    damaged = pipe("inspect", copy, cache=tokens["cache"])
    assert damaged.code == 1 and "Traceback" not in damaged.err and "cut.bin" in damaged.err
