"""`--dry-run`: the plan (sources, cached or to build, estimates) without building anything; the
estimate against what a real run then makes; hub sources and a missing tokenizer offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_jsonl

from pipeline import sample
from pipeline.cli import main
from pipeline.sample import sample_files


def _blend(folder: Path, tokenizer: Path | None, datasets: list[dict] | None = None) -> Path:
    write_jsonl(folder / "a.jsonl.gz", 400, 21, "a")
    write_jsonl(folder / "b.jsonl", 250, 22, "b")
    body = {
        "name": "d",
        "datasets": datasets
        or [
            {"name": "a", "weight": 0.5, "files": "a.jsonl.gz"},
            {"name": "b", "weight": 0.5, "files": "b.jsonl"},
        ],
    } | ({"tokenizer": str(tokenizer)} if tokenizer else {})
    (folder / "blend.json").write_text(json.dumps(body))
    return folder / "blend.json"


def _pipe(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _plan(*args: object) -> dict:
    code, out, err = _pipe(*args, "--json")
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_dry_run_builds_nothing_and_estimates(small_tokenizer: Path, tmp_path: Path) -> None:
    blend, cache = _blend(tmp_path, small_tokenizer), tmp_path / "cache"
    plan = _plan("run", "--blend", blend, "--dry-run", "--cache-dir", cache)
    assert plan["dry_run"] and plan["until"] == "tokenize" and plan["notes"] == []
    a, b = plan["datasets"]
    assert a["source"] | {"bytes": 0} == {
        "kind": "files",
        "format": "jsonl",
        "files": 1,
        "bytes": 0,
        "names": ["a.jsonl.gz"],
    }
    assert [x["stage"] for x in a["artifacts"]] == ["download", "tokenize"]
    assert not any(x["cached"] for d in (a, b) for x in d["artifacts"])
    assert (a["estimate"]["docs"], b["estimate"]["docs"]) == (400, 250)  # small: read whole
    assert a["estimate"]["exact_counts"] and a["estimate"]["tokens"] > 400
    assert plan["artifacts"][0]["stage"] == "megatron_blend" and plan["to_build"] == 5
    assert plan["disk_bytes"] > 0
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]  # no artifact
    assert not any((cache / ".work").iterdir())  # no work folder

    # The real run makes the artifacts the plan named, about as large as it said.
    code, out, err = _pipe("run", "--blend", blend, "--cache-dir", cache, "--json", "--quiet")
    assert code == 0, err
    built = json.loads(out.strip().splitlines()[-1])["artifacts"]
    planned = [x["key"] for d in (a, b) for x in d["artifacts"]] + [plan["artifacts"][0]["key"]]
    assert sorted(x["artifact"] for x in built) == sorted(planned)
    again = _plan("run", "--blend", blend, "--dry-run", "--cache-dir", cache)
    assert again["to_build"] == 0 and all(x["cached"] for x in again["datasets"][0]["artifacts"])
    counted = again["datasets"][0]["estimate"]
    assert counted["sample"]["of"] == "cached download shards"
    assert abs(a["estimate"]["tokens"] - counted["tokens"]) <= 0.02 * counted["tokens"]


def test_estimate_extrapolates_by_bytes_from_a_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [write_jsonl(tmp_path / "x.jsonl.gz", 3000, 5, "x")]
    monkeypatch.setattr(sample, "SAMPLE_DOCS", 300)
    s = sample_files(files, "jsonl", "text")
    assert not s.exact and len(s.texts) == 300
    assert 2400 <= s.docs <= 3600, s.docs  # gzip read in 64 KiB blocks: within 20%


def test_stage_commands_take_dry_run(small_tokenizer: Path, tmp_path: Path) -> None:
    blend, cache = _blend(tmp_path, small_tokenizer), tmp_path / "cache"
    down = _plan("download", "--blend", blend, "--dry-run", "--cache-dir", cache)
    assert down["until"] == "download" and "tokens" not in down["datasets"][0]["estimate"]
    assert [x["stage"] for x in down["datasets"][1]["artifacts"]] == ["download"]
    code, out, _ = _pipe("tokenize", "--blend", blend, "--dry-run", "--cache-dir", cache)
    assert code == 0
    assert "would be built" in out and "tokens from a sample of" in out and "to build: 5" in out
    assert not (cache / "download").exists()


def test_until_train_dry_run_names_the_run(small_tokenizer: Path, tmp_path: Path) -> None:
    blend, cache = _blend(tmp_path, small_tokenizer), tmp_path / "cache"
    args = ("run", "--blend", blend, "--until", "train", "--dry-run", "--cache-dir", cache)
    plan = _plan(*args, "--model", "tiny", "--nproc-per-node", "2", "train.train_iters=7")
    blend_art, run = plan["artifacts"]
    assert run["stage"] == "train" and not run["cached"] and run["train_iters"] == 7
    assert "2 GPU(s)" in run["layout"] and run["run_dir"].endswith(run["key"])
    # pipe train's preflight, its split sizes estimated from the sample (both files read whole)
    checks = run["preflight"]
    budget, tokens = checks["token_budget"], sum(d["estimate"]["tokens"] for d in plan["datasets"])
    assert budget["estimated"] == "estimated from a sample of 650 docs; not tokenized yet"
    assert budget["train_tokens"] == pytest.approx(tokens * 0.99, abs=2)  # split 0.005 + 0.005
    assert budget["train_consumed"] == 7 * budget["tokens_per_iteration"] and budget["epochs"] > 0
    assert checks["memory"]["capacity_gib"] == 80 and checks["memory"]["fits"]
    code, out, _ = _pipe(*args, "--model", "tiny", "--nproc-per-node", "2", "--gpu-memory", "40")
    assert code == 0 and f"epochs of the ~{budget['train_tokens']:,} in the train split" in out
    assert "estimated from a sample of 650 docs" in out and "of 40 GiB (--gpu-memory): fits" in out
    code, _, err = _pipe(*args, "--nproc-per-node", "0")
    assert code == 1 and err.startswith("error: --nproc-per-node must be at least 1")


def test_hub_source_offline_is_one_note(small_tokenizer: Path, tmp_path: Path) -> None:
    hub = [{"name": "web", "hf": {"path": "HuggingFaceFW/fineweb-edu", "name": "sample-10BT"}}]
    blend = _blend(tmp_path, small_tokenizer, hub)
    plan = _plan("run", "--blend", blend, "--dry-run", "--cache-dir", tmp_path / "c")
    (web,) = plan["datasets"]
    assert web["artifacts"] == [] and "estimate" not in web
    assert len(web["notes"]) == 1 and "cannot resolve its revision" in web["notes"][0]
    code, out, _ = _pipe("run", "--blend", blend, "--dry-run", "--cache-dir", tmp_path / "c")
    assert code == 0 and "hub HuggingFaceFW/fineweb-edu" in out and "revision not resolved" in out


def test_blend_without_tokenizer_says_it_uses_the_default(tmp_path: Path) -> None:
    blend = _blend(tmp_path, None)
    plan = _plan("run", "--blend", blend, "--dry-run", "--cache-dir", tmp_path / "c")
    first, *rest = plan["notes"]
    assert "names no tokenizer: using the default nvidia/" in first
    assert rest and rest[0].startswith("no token estimate: tokenizer")  # offline: not fetched
    assert "tokens" not in plan["datasets"][0]["estimate"]


def test_tokenize_summary_says_it_uses_the_default(
    small_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipe tokenize` itself, not only `pipe run` and the plan, names the hub default it used
    (the default stood in for by a local tokenizer: the hub is offline here)."""
    monkeypatch.setattr("pipeline.blend_file.DEFAULT_TOKENIZER", str(small_tokenizer))
    blend, cache = _blend(tmp_path, None), tmp_path / "c"
    code, out, err = _pipe("tokenize", "--blend", blend, "--cache-dir", cache, "--limit", "20")
    assert code == 0, err
    said = " ".join(err.split())  # the console wraps long lines
    assert f"note: the blend names no tokenizer: using the default {small_tokenizer}" in said
    code, out, _ = _pipe("tokenize", "--blend", blend, "--cache-dir", cache, "--limit", "20",
                         "--json", "--quiet")  # fmt: skip
    assert code == 0 and "names no tokenizer" in json.loads(out.strip().splitlines()[-1])["note"]
    (tmp_path / "named").mkdir()
    named = _blend(tmp_path / "named", small_tokenizer)
    code, out, err = _pipe("tokenize", "--blend", named, "--cache-dir", cache, "--limit", "20")
    assert code == 0 and "note:" not in err and "note" not in out


def test_until_train_plans_with_a_hub_tokenizer(
    small_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blend naming a hub id (its snapshot stood in for: offline here) is planned through
    to the run: the tokenizer's facts come from the snapshot, not from a folder named like the
    id."""
    monkeypatch.setattr("pipeline.fingerprint._hub_tokenizer_folder", lambda _: small_tokenizer)
    blend, cache = _blend(tmp_path, None), tmp_path / "cache"
    body = json.loads(blend.read_text()) | {"tokenizer": "org/tok"}
    blend.write_text(json.dumps(body))
    args = ("run", "--blend", blend, "--until", "train", "--dry-run", "--cache-dir", cache)
    plan = _plan(*args, "--model", "tiny", "--nproc-per-node", "1")
    assert plan["tokenizer"]["path"] == "org/tok"
    run = plan["artifacts"][-1]
    assert run["stage"] == "train" and run["preflight"]["token_budget"]["epochs"] > 0
