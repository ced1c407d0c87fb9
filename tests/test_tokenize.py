"""End to end: `pipe tokenize` on real files with a real tokenizer, read back by megatron-core."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
from conftest import Corpus, pipe

LIMIT = 300


@pytest.fixture(scope="module")
def built(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray puts sockets here
    first = pipe(
        "tokenize",
        "--blend",
        corpus.blend,
        "--limit",
        LIMIT,
        "--json",
        cache=cache,
        env={"RAY_TMPDIR": str(ray_tmp)},
    )
    assert first.code == 0, first.err
    return {"cache": cache, "result": first.json, "err": first.err, "ray_tmp": ray_tmp}


def test_tokenize_runs_in_process_without_ray(built: dict) -> None:
    """Locally the engine uses every core itself: no Ray cluster is started."""
    assert not list(built["ray_tmp"].rglob("session_*"))


def test_quick_exit_leaves_nothing_on_stderr(built: dict) -> None:
    """`pipe` skips the interpreter's teardown once torch is loaded (util/quick_exit.py) and
    the collector's frozen objects are never reported: a quiet run prints nothing there."""
    assert "leaked" not in built["err"] and "Traceback" not in built["err"], built["err"]
    assert built["result"]["stage"] == "megatron_blend"  # its stdout was flushed before exit


def _bins(blend_json: str | Path) -> dict[str, bytes]:
    """Every bin/idx of the tokenize artifacts a megatron blend names, by dataset and file."""
    folders = [Path(p).parent for p in json.loads(Path(blend_json).read_text())["train"][1::2]]
    return {
        f"{_manifest(folder)['name']}/{p.name}": p.read_bytes()
        for folder in folders
        for p in sorted(folder.glob("*.[bi][id][nx]"))
    }


def test_ray_run_matches_and_leaves_no_process(built: dict, corpus: Corpus, tmp_path: Path) -> None:
    """On Ray (`--ray-address local`: a cluster of its own) the bytes are the same as in
    process, Ray was really used, and nothing it started outlives the command."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray puts sockets here
    cache = tmp_path / "cache"
    args = ("tokenize", "--blend", corpus.blend, "--limit", LIMIT, "--quiet", "--json")
    res = pipe(
        *args,
        "--ray-address",
        "local",
        "--workers",
        1,
        cache=cache,
        env={"RAY_TMPDIR": str(ray_tmp)},
    )
    assert res.code == 0, res.err
    latest = ray_tmp / "ray" / "session_latest"  # Ray ran; pipe removed its session folder
    assert latest.is_symlink() and not latest.exists(), list(ray_tmp.rglob("*"))
    assert _bins(res.json["blend_json"]) == _bins(built["result"]["blend_json"])
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(ray_tmp) in cmdline:
            left.append(f"{proc.info['pid']}: {cmdline[:120]}")
    assert not left, "\n".join(left)


def _manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def test_json_output_names_the_artifact(built: dict) -> None:
    res = built["result"]
    assert res["stage"] == "megatron_blend" and res["reused"] is False
    assert Path(res["path"]).is_dir() and res["artifact"] == Path(res["path"]).name
    assert Path(res["blend_json"]).is_file()


def test_blend_json_lists_nonempty_prefixes_with_blend_weights(built: dict, corpus: Corpus) -> None:
    blend = json.loads(Path(built["result"]["blend_json"]).read_text())
    spec = json.loads(corpus.blend.read_text())
    weights = {d["name"]: d["weight"] for d in spec["datasets"]}
    assert set(blend) == {"train", "valid", "test"}
    for split, entries in blend.items():
        assert entries, f"{split} is empty with --limit {LIMIT}"
        pairs = list(zip(entries[::2], entries[1::2], strict=True))
        for _, prefix in pairs:
            assert Path(prefix + ".bin").stat().st_size > 0
            assert Path(prefix + ".idx").stat().st_size > 0
        if split == "train":
            names = [_manifest(Path(p).parent)["name"] for _, p in pairs]
            total = sum(weights[n] for n in names)
            assert [w for w, _ in pairs] == pytest.approx([weights[n] / total for n in names])


def test_shards_hold_tokenizer_output_plus_eod(built: dict, corpus: Corpus) -> None:
    """Every document of every split, read back with megatron-core, equals the tokenizer's ids."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(corpus.tokenizer))
    blend_art = _manifest(built["result"]["path"])
    assert blend_art["stats"]["tokenizer"]["eod_id"] == tok.eos_token_id
    for token_key in blend_art["parents"]:
        tokens_dir = next(built["cache"].glob(f"tokenize/{token_key}"))
        tokens = _manifest(tokens_dir)
        (download_key,) = tokens["parents"]
        shards = sorted(built["cache"].glob(f"download/{download_key}/*.parquet"))
        docs = pq.read_table(shards, columns=["id", "text"]).to_pylist()
        assert len(docs) == min(LIMIT, _manifest(shards[0].parent)["stats"]["docs"])
        seen = 0
        for split in ("train", "valid", "test"):
            if not tokens["stats"][split]["docs"]:
                continue
            ds = IndexedDataset(str(tokens_dir / split))
            expected_dtype = np.int32 if len(tok) > 65500 else np.uint16
            assert ds.index.dtype == expected_dtype
            split_docs = [d for d in docs if _split_of(tokens, d["id"]) == split]
            assert len(ds) == len(split_docs) == tokens["stats"][split]["docs"]
            for i in range(0, len(split_docs), max(1, len(split_docs) // 25)):
                want = tok(split_docs[i]["text"], add_special_tokens=False)["input_ids"]
                assert ds[i].tolist() == want + [tok.eos_token_id]
            seen += len(ds)
        assert seen == len(docs)


def _split_of(tokens_manifest: dict, doc_id: str) -> str:
    from stages.splits import SplitPlan

    cfg = tokens_manifest["config"]
    return SplitPlan(cfg["valid"], cfg["test"], tokens_manifest["stats"]["forced"]).split_of(doc_id)


def test_blend_feeds_megatron_dataset_builder(built: dict, corpus: Corpus) -> None:
    """blend.json -> get_blend_from_list -> BlendedMegatronDatasetBuilder(GPTDataset) on CPU."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list
    from megatron.core.tokenizers import MegatronTokenizer

    blend = json.loads(Path(built["result"]["blend_json"]).read_text())
    tokenizer = MegatronTokenizer.from_pretrained(
        tokenizer_path=str(corpus.tokenizer), metadata_path={"library": "huggingface"}
    )
    assert tokenizer.eod == _manifest(built["result"]["path"])["stats"]["tokenizer"]["eod_id"]
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=64,
        split=None,
        blend_per_split=[get_blend_from_list(blend[s]) for s in ("train", "valid", "test")],
        path_to_cache=str(built["cache"] / "megatron-index"),
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        mid_level_dataset_surplus=0.005,
    )
    datasets = BlendedMegatronDatasetBuilder(
        GPTDataset, [200, 20, 20], lambda: True, config
    ).build()
    for ds in datasets:
        assert ds is not None and len(ds) > 0
        sample = ds[0]
        assert sample["tokens"].shape[0] == 64


def test_rerun_is_a_fast_cache_hit(built: dict, corpus: Corpus) -> None:
    start = time.perf_counter()
    again = pipe(
        "tokenize", "--blend", corpus.blend, "--limit", LIMIT, "--json", cache=built["cache"]
    )
    elapsed = time.perf_counter() - start
    assert again.code == 0, again.err
    assert again.json["reused"] is True
    assert again.json["artifact"] == built["result"]["artifact"]
    assert elapsed < 3.0, f"cache hit took {elapsed:.2f}s"


def test_limit_and_tokenizer_change_the_key(
    built: dict, corpus: Corpus, small_tokenizer: Path
) -> None:
    other_limit = pipe(
        "tokenize",
        "--blend",
        corpus.blend,
        "--limit",
        LIMIT - 1,
        "--json",
        "--quiet",
        cache=built["cache"],
    )
    assert other_limit.code == 0, other_limit.err
    assert other_limit.json["artifact"] != built["result"]["artifact"]
    if corpus.kind == "shared":
        other_tok = pipe(
            "tokenize",
            "--blend",
            corpus.blend,
            "--limit",
            LIMIT,
            "--json",
            "--tokenizer",
            small_tokenizer,
            cache=built["cache"],
        )
        assert other_tok.code == 0, other_tok.err
        assert other_tok.json["artifact"] not in (
            built["result"]["artifact"],
            other_limit.json["artifact"],
        )


def test_force_rebuilds_same_bytes(built: dict, corpus: Corpus) -> None:
    before = _manifest(built["result"]["path"])
    token_files = {
        k: _manifest(built["cache"] / "tokenize" / k)["files"] for k in before["parents"]
    }
    forced = pipe(
        "tokenize",
        "--blend",
        corpus.blend,
        "--limit",
        LIMIT,
        "--json",
        "--force",
        "--quiet",
        cache=built["cache"],
    )
    assert forced.code == 0, forced.err
    assert forced.json["reused"] is False
    assert forced.json["artifact"] == built["result"]["artifact"]
    after = _manifest(forced.json["path"])
    assert after["created"] >= before["created"]
    for k, files in token_files.items():
        assert _manifest(built["cache"] / "tokenize" / k)["files"] == files


def test_artifacts_commands_show_lineage(built: dict) -> None:
    key = built["result"]["artifact"]
    ls = pipe("artifacts", "ls", "--json", cache=built["cache"])
    assert ls.code == 0, ls.err
    rows = [json.loads(line) for line in ls.out.splitlines()]
    stages = {r["stage"] for r in rows}
    assert {"download", "tokenize", "megatron_blend"} <= stages
    show = pipe("artifacts", "show", key[:8], cache=built["cache"])
    assert show.code == 0 and json.loads(show.out)["key"] == key
    path = pipe("artifacts", "path", key, cache=built["cache"])
    assert path.out.strip() == built["result"]["path"]


def test_hf_engine_writes_the_same_bytes(built: dict, corpus: Corpus, tmp_path: Path) -> None:
    """`--engine hf` (the reference) and the default (GigaToken) give byte-identical bin/idx,
    and each artifact records the engine that ran."""
    cache = tmp_path / "cache"
    args = ("tokenize", "--blend", corpus.blend, "--limit", LIMIT, "--quiet", "--json")
    res = pipe(*args, "--engine", "hf", cache=cache)
    assert res.code == 0, res.err
    assert _bins(res.json["blend_json"]) == _bins(built["result"]["blend_json"])
    ran = {
        _manifest(Path(prefix).parent)["stats"]["engine"]["engine"]
        for result in (res.json, built["result"])
        for prefix in json.loads(Path(result["blend_json"]).read_text())["train"][1::2]
    }
    assert ran == {"hf", "gigatoken"}
