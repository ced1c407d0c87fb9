"""`pipe curate`: NeMo Curator filters and CPU dedup on a corpus with planted junk, then tokenize.

Ray-using runs are few (each start costs seconds on a 2-core machine): one curate and one
tokenize on the planted corpus, and one curate on real GCIDE when ../shared is present.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
from conftest import HAVE_SHARED, SHARED_CORPORA, pipe
from curate_corpus import CURATE, PLANTED, write_corpus

from pipeline.blend_file import parse_blend
from util.errors import PipeError


def _manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def _blend(tmp: Path, curate: object, tokenizer: Path | None = None, **dataset: object) -> Path:
    blend = tmp / "blend.json"
    spec = {"name": "planted", "files": "planted.jsonl", "curate": curate} | dataset
    blend.write_text(
        json.dumps(
            {
                "name": "curated",
                "tokenizer": str(tokenizer or "unused"),
                "split": {"valid": 0.01, "test": 0.01},
                "datasets": [spec],
            }
        )
    )
    return blend


def _marked(mark: str) -> list[psutil.Process]:
    """Live processes that inherited our marker: Ray daemons and workers a run left behind."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PIPE_TEST_MARK") == mark:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


# ---- blend settings (no Ray) ----------------------------------------------------------------
def test_curate_true_means_defaults(tmp_path: Path) -> None:
    blend = parse_blend(json.loads(_blend(tmp_path, True).read_text()), tmp_path / "b.json")
    cfg = blend.datasets[0].curate
    assert [f["name"] for f in cfg["filters"]] == [
        "word_count",
        "non_alpha_numeric",
        "repeating_top_ngrams",
        "repeated_lines",
        "repeated_paragraphs",
        "urls",
    ]
    assert cfg["filters"][0] == {"name": "word_count", "min": 50, "max": 100_000}
    assert cfg["exact_dedup"] is True
    assert cfg["fuzzy_dedup"] == {"threshold": 0.8, "num_perm": 128, "ngram": 5, "seed": 42}
    empty = parse_blend(json.loads(_blend(tmp_path, {}).read_text()), tmp_path / "b.json")
    assert empty.datasets[0].curate == cfg
    off = parse_blend(json.loads(_blend(tmp_path, False).read_text()), tmp_path / "b.json")
    assert off.datasets[0].curate is None


@pytest.mark.parametrize(
    ("curate", "key", "hint"),
    [
        ({"filters": {"wordcount": {}}}, "curate.filters.wordcount", "known filters are"),
        ({"filters": {"urls": {"maxx": 1}}}, "curate.filters.urls.maxx", "urls takes max"),
        ({"filters": {"urls": {"max": "x"}}}, "curate.filters.urls.max", "non-negative number"),
        ({"fuzzy_dedup": {"threshold": 2}}, "curate.fuzzy_dedup.threshold", "(0, 1]"),
        ({"dedup": True}, "curate.dedup", "allowed keys"),
        ("yes", "curate", "must be true or an object"),
    ],
)
def test_bad_curate_settings_name_file_key_and_fix(
    tmp_path: Path, curate: object, key: str, hint: str
) -> None:
    path = _blend(tmp_path, curate)
    with pytest.raises(PipeError) as err:
        parse_blend(json.loads(path.read_text()), path)
    assert str(path) in str(err.value) and key in str(err.value) and hint in str(err.value)


# ---- dedup stages called directly (no Ray) ----------------------------------------------------
def test_dedup_stages_keep_the_first_in_corpus_order() -> None:
    from nemo_curator.tasks import DocumentBatch

    from stages.dedup import (
        DROP,
        SEQ,
        ExactDuplicates,
        ExactHash,
        FuzzyDuplicates,
        MinHashSignature,
    )

    base = " ".join(f"word{i}" for i in range(200))
    near = base.replace("word150", "other")
    far = " ".join(f"term{i}" for i in range(200))
    texts = [near, base, far, "  " + base.replace(" ", "\n") + " ", base]
    df = pd.DataFrame({"text": texts, SEQ: [4, 0, 1, 2, 3]})  # rows arrive out of order
    batch = DocumentBatch(dataset_name="t", data=df)
    batch = MinHashSignature().process(ExactHash().process(batch))
    small = batch.to_pandas().drop(columns=["text"]).assign(**{DROP: ""})
    out = FuzzyDuplicates().process(ExactDuplicates().process(DocumentBatch("t", small)))
    drops = dict(zip(out.to_pandas()[SEQ], out.to_pandas()[DROP], strict=True))
    assert drops == {0: "", 1: "", 2: "exact_dedup", 3: "exact_dedup", 4: "fuzzy_dedup"}


# ---- the real command on the planted corpus ------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, small_tokenizer: Path) -> dict:
    tmp = tmp_path_factory.mktemp("planted")
    counts = write_corpus(tmp / "planted.jsonl")
    blend = _blend(tmp, CURATE, small_tokenizer)
    cache = tmp / "cache"
    mark = uuid.uuid4().hex
    res = pipe("curate", "--blend", blend, "--json", cache=cache, env={"PIPE_TEST_MARK": mark})
    assert res.code == 0, res.err
    return {"blend": blend, "cache": cache, "res": res, "counts": counts, "mark": mark}


def test_each_step_removes_exactly_what_was_planted(planted: dict) -> None:
    out = planted["res"].json
    assert out["stage"] == "curate" and out["reused"] is False
    stats = out["stats"]
    removed = {s["step"]: s["docs"] for s in stats["removed"]}
    assert list(removed) == list(PLANTED)  # steps in the order they ran
    assert removed == PLANTED
    assert stats["docs_in"] == planted["counts"]["docs"]
    assert stats["docs"] == stats["docs_in"] - sum(PLANTED.values())
    assert stats["chars_in"] == stats["chars"] + sum(s["chars"] for s in stats["removed"])
    assert all(s["chars"] > 0 for s in stats["removed"])
    # the table a person sees lists every step
    for step in PLANTED:
        assert step in planted["res"].err


def test_curated_shards_keep_schema_order_and_first_copies(planted: dict) -> None:
    path = Path(planted["res"].json["path"])
    shards = sorted(path.glob("*.parquet"))
    table = pq.read_table(shards)
    raw = planted["cache"] / "download" / _manifest(path)["parents"][0]
    raw_schema = pq.read_schema(next(raw.glob("*.parquet")))
    assert table.schema.equals(raw_schema)
    for shard in shards:
        meta = pq.ParquetFile(shard).metadata
        assert all(meta.row_group(i).num_rows <= 1000 for i in range(meta.num_row_groups))
    ids = [int(i.split("-")[1]) for i in table.column("id").to_pylist()]
    assert ids == sorted(ids)  # corpus order kept
    n = planted["counts"]["docs"]
    copies = PLANTED["exact_dedup"] + PLANTED["fuzzy_dedup"]
    assert not set(ids) & set(range(n - copies, n))  # the later copies go, the originals stay
    assert len(ids) == _manifest(path)["stats"]["docs"]


def test_no_ray_process_outlives_the_command(planted: dict) -> None:
    deadline = time.monotonic() + 15
    while (left := _marked(planted["mark"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, [p.cmdline()[:2] for p in left]


def test_lineage_cache_hit_and_tokenize_reads_the_curated_artifact(planted: dict) -> None:
    curated = planted["res"].json
    start = time.perf_counter()
    again = pipe("curate", "--blend", planted["blend"], "--json", cache=planted["cache"])
    assert again.code == 0, again.err
    assert again.json["reused"] is True and again.json["artifact"] == curated["artifact"]
    assert time.perf_counter() - start < 5.0  # a hit starts neither Ray nor Curator
    tok = pipe("tokenize", "--blend", planted["blend"], "--json", "--quiet", cache=planted["cache"])
    assert tok.code == 0, tok.err
    (token_key,) = _manifest(tok.json["path"])["parents"]
    tokens = _manifest(planted["cache"] / "tokenize" / token_key)
    assert tokens["parents"] == [curated["artifact"]]  # download -> curate -> tokenize
    cur = _manifest(curated["path"])
    assert _manifest(planted["cache"] / "download" / cur["parents"][0])["stage"] == "download"
    docs = sum(tokens["stats"][s]["docs"] for s in ("train", "valid", "test"))
    assert docs == cur["stats"]["docs"]


def test_curate_without_curate_key_is_refused(tmp_path: Path) -> None:
    write_corpus(tmp_path / "planted.jsonl")
    blend = tmp_path / "plain.json"
    blend.write_text(json.dumps({"datasets": [{"name": "p", "files": "planted.jsonl"}]}))
    res = pipe("curate", "--blend", blend, cache=tmp_path / "cache")
    assert res.code == 1 and "no dataset has a 'curate' key" in res.err


# ---- real text ------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_SHARED, reason="../shared is not beside this checkout")
def test_gcide_counts_add_up(tmp_path: Path) -> None:
    blend = tmp_path / "gcide.json"
    gcide = {"name": "gcide", "files": str(SHARED_CORPORA / "gcide.jsonl.gz"), "curate": {}}
    blend.write_text(json.dumps({"datasets": [gcide]}))
    res = pipe("curate", "--blend", blend, "--limit", 2000, "--json", cache=tmp_path / "c")
    assert res.code == 0, res.err
    stats = res.json["stats"]
    assert stats["docs_in"] == 2000
    assert stats["docs_in"] == stats["docs"] + sum(s["docs"] for s in stats["removed"])
    assert stats["chars_in"] == stats["chars"] + sum(s["chars"] for s in stats["removed"])
    assert 0 < stats["docs"] < 2000
    kept = pq.read_table(sorted(Path(res.json["path"]).glob("*.parquet")))
    assert kept.num_rows == stats["docs"]
