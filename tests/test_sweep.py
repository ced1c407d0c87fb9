"""`pipe sweep` on a CPU machine: the sweep file's checks, the dry run, and real sweeps whose
launches go to tests/fake_torchrun.py (torchrun's place, same plan in, same record files out):
which runs launch, which are reused, which failures are recorded and kept, and a sweep
interrupted by Ctrl-C that resumes where it stopped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_train_data import publish_blend

from pipeline.cli import main
from pipeline.sweep import check_distinct
from pipeline.sweep_file import KNOBS, SweepFileError, load_sweep

ROOT = Path(__file__).resolve().parents[1]
FAKE_TORCHRUN = Path(__file__).with_name("fake_torchrun.py")
BASE = {"model": "tiny", "nproc_per_node": 2, "tp": 1, "overrides": ["train.train_iters=10"]}


def write_sweep(folder: Path, variants: dict, base: dict | None = None, name: str = "t") -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "base": base or BASE, "variants": variants}))
    return path


@pytest.fixture
def blend_json(tmp_path: Path, small_tokenizer: Path) -> Path:
    """A published megatron blend (the real cache API) tokenized with the small tokenizer."""
    return publish_blend(tmp_path, small_tokenizer)


@pytest.fixture
def launches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torchrun replaced by the fake at the process boundary; returns its launch log."""
    log = tmp_path / "launches.jsonl"
    log.touch()
    monkeypatch.setattr(
        "training.plan.torchrun_executable", lambda: [sys.executable, str(FAKE_TORCHRUN)]
    )
    monkeypatch.setenv("FAKE_LAUNCHES", str(log))
    return log


def sweep(path: Path, blend: Path, cache: Path, *extra: str) -> tuple[int, str]:
    args = ["sweep", str(path), "--blend", str(blend), "--cache-dir", str(cache), *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def launched(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def record_of(cache: Path, name: str = "t") -> dict:
    return json.loads((cache / "sweeps" / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("variants", "base", "message"),
    [
        (
            {"two": {"tp": 2, "train.micro_batch_size": 1}},
            None,
            "variant 'two': changes 2 variables (tp, train.micro_batch_size); a variant changes "
            "exactly one",
        ),
        ({"same": {"tp": 1}}, None, "variant 'same': sets tp as the base does; it changes nothing"),
        (
            {"typo": {"train.micro_batch_sise": 1}},
            None,
            "variant 'typo': 'train.micro_batch_sise': train has no field 'micro_batch_sise'; "
            "did you mean 'micro_batch_size'",
        ),
        ({"prec": {"mixed_precision.fp8": "e4m3"}}, None, "variant 'prec': 'mixed_precision.fp8' "),
        ({"empty": {}}, None, "variant 'empty': give the one change as an object"),
        ({"base": {"tp": 2}}, None, "variant 'base': a variant's name is"),
        ({"p": {"precision": "fp16"}}, None, "variant 'p': precision must be one of"),
        ({"x": {"tp": 2}}, BASE | {"modle": "1b"}, "base: unknown key 'modle'"),
        ({"x": {"tp": 2}}, BASE | {"overrides": ["train.itres=3"]}, "base: 'train.itres'"),
    ],
)
def test_a_bad_sweep_file_is_refused_naming_file_and_variant(
    tmp_path: Path, variants: dict, base: dict | None, message: str
) -> None:
    path = write_sweep(tmp_path, variants, base)
    with pytest.raises(SweepFileError) as err:
        load_sweep(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_one_variable_may_span_fields_and_replaces_the_base_setting(tmp_path: Path) -> None:
    base = BASE | {"overrides": ["train.train_iters=10", "model.recompute_granularity=selective"]}
    full = {
        "model.recompute_granularity": "full",
        "model.recompute_method": "uniform",
        "model.recompute_num_layers": 1,
    }
    spec = load_sweep(write_sweep(tmp_path, {"full": full, "lr": {"optimizer.lr": 0.001}}, base))
    names = [v.name for v in spec.variants]
    assert names == ["base", "full", "lr"] and spec.variants[1].variable in KNOBS
    assert spec.variants[1].launch.overrides == (
        "train.train_iters=10",
        "model.recompute_granularity=full",
        "model.recompute_method=uniform",
        "model.recompute_num_layers=1",
    )
    assert spec.variants[2].launch.overrides[-1] == "optimizer.lr=0.001"
    assert spec.variants[2].launch.args()[:2] == ["--model", "tiny"]


def test_a_variant_that_plans_like_another_is_refused_before_any_data(tmp_path: Path) -> None:
    # tiny's micro batch on DP=2 is already 2: the variant changes nothing.
    path = write_sweep(tmp_path, {"mbs2": {"train.micro_batch_size": 2}})
    code, out = sweep(path, tmp_path / "missing-blend.json", tmp_path / "cache")
    assert code == 1
    assert "variant 'mbs2' plans exactly as 'base'; it changes nothing" in out
    assert not (tmp_path / "cache").exists()  # refused before the cache or the data


def test_committed_sweeps_are_valid_and_cover_the_issue() -> None:
    files = sorted((ROOT / "training" / "sweeps").glob("*.json"))
    assert files
    for path in files:
        check_distinct(load_sweep(path))
    spec = load_sweep(ROOT / "training" / "sweeps" / "1b.json")
    changed = {v.variable: v.value for v in spec.variants[1:]}
    for variable in (
        "train.micro_batch_size",
        "train.global_batch_size",
        "sequence length",
        "activation checkpointing",
        "tp",
        "learning rate",
        "warm-up",
        "precision",
    ):
        assert variable in changed
    precisions = {v.value for v in spec.variants if v.variable == "precision"}
    assert precisions == {"fp8-current", "fp8-delayed", "nvfp4"}
    assert (spec.base.model, spec.base.nproc_per_node) == ("1b", 2)
    assert "train.train_iters=30" in spec.base.overrides


def test_dry_run_plans_every_variant_and_launches_nothing(
    tmp_path: Path, blend_json: Path, launches: Path
) -> None:
    path = write_sweep(
        tmp_path,
        {
            "mbs1": {"train.micro_batch_size": 1},
            "tp2": {"tp": 2},
            "tp4": {"tp": 4},
            "nvfp4": {"precision": "nvfp4"},
        },
    )
    cache = tmp_path / "cache"
    code, out = sweep(path, blend_json, cache, "--dry-run", "--json")
    assert code == 0, out
    plan = json.loads(out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in plan["variants"]}
    assert [r["action"] for r in plan["variants"][:3]] == ["run", "run", "run"]
    keys = [rows[n]["run_key"] for n in ("base", "mbs1", "tp2")]
    assert len(set(keys)) == 3  # the layout is in a sweep run's key: tp2 is not base resumed
    assert rows["tp4"]["action"] == "refused" and rows["tp4"]["run_key"] is None
    assert (
        "world size 2 (1 node(s) x 2) is not divisible by TP x PP = 4 x 1" in rows["tp4"]["reason"]
    )
    assert "nvfp4" in rows["nvfp4"]["reason"]
    assert launched(launches) == [] and not (cache / "sweeps").exists()
    code, out = sweep(path, blend_json, cache, "--dry-run", "--only", "tp2,tp4")
    assert code == 0 and "2 run(s) planned" in out and "mbs1" not in out


def test_sweep_records_failures_reuses_done_runs_and_retries_on_request(
    tmp_path: Path, blend_json: Path, launches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GPU_TOKENS", "600")  # tiny: seq 256, so micro batch 4 is too big
    path = write_sweep(
        tmp_path,
        {
            "mbs1": {"train.micro_batch_size": 1},
            "mbs4": {"train.micro_batch_size": 4},
            "tp2": {"tp": 2},
            "tp4": {"tp": 4},
        },
    )
    cache = tmp_path / "cache"
    code, out = sweep(path, blend_json, cache)
    assert code == 1 and "2 of 5 variants failed (mbs4, tp4)" in out
    assert "sweep t" in out  # the table
    rec = record_of(cache)
    by = {e["name"]: e for e in rec["variants"]}
    assert [e["name"] for e in rec["variants"]] == ["base", "mbs1", "mbs4", "tp2", "tp4"]
    assert rec["pending"] == [] and rec["file"] == str(path.resolve())
    assert rec["base"]["model"] == "tiny" and rec["base"]["blend"] == str(blend_json)
    assert {n: e["status"] for n, e in by.items()} == {
        "base": "done",
        "mbs1": "done",
        "mbs4": "failed",
        "tp2": "done",
        "tp4": "failed",
    }
    assert by["mbs4"]["reason"].startswith("[rank0]: torch.OutOfMemoryError: CUDA out of memory")
    assert "training exited with code 1" in by["mbs4"]["reason"]
    assert "not divisible by TP x PP" in by["tp4"]["reason"] and by["tp4"]["run_key"] is None
    assert by["mbs1"]["variable"] == "train.micro_batch_size" and by["mbs1"]["value"] == 1
    for name in ("base", "mbs1", "tp2"):  # published runs with a real assembled record
        run_record = json.loads((Path(by[name]["run_path"]) / "record.json").read_text())
        assert run_record["summary"]["iterations"] == 10
        assert Path(by[name]["run_path"]).parent.name == "train"
    mbs = [x["mbs"] for x in launched(launches)]
    assert mbs == [2, 1, 4, 2]  # base, mbs1, mbs4 (OOM), tp2; tp4 never launched

    # Again: finished runs are reused, the OOM is kept without a launch.
    code, out = sweep(path, blend_json, cache)
    assert code == 1 and len(launched(launches)) == 4
    again = {e["name"]: e for e in record_of(cache)["variants"]}
    assert [again[n]["status"] for n in ("base", "mbs1", "tp2")] == ["reused"] * 3
    assert again["mbs4"] == by["mbs4"]

    # --retry-failed on a bigger (fake) GPU: only mbs4 launches, and now it finishes.
    monkeypatch.setenv("FAKE_GPU_TOKENS", "100000")
    code, out = sweep(path, blend_json, cache, "--retry-failed", "--only", "mbs4")
    assert code == 0, out
    assert [x["mbs"] for x in launched(launches)[4:]] == [4]
    final = {e["name"]: e for e in record_of(cache)["variants"]}
    assert final["mbs4"]["status"] == "done" and final["mbs4"]["reason"] is None
    assert final["base"]["status"] == "reused" and final["tp4"]["status"] == "failed"


def test_an_interrupted_sweep_resumes_where_it_stopped(
    tmp_path: Path, blend_json: Path, launches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_INTERRUPT_IF", "train.global_batch_size=16")
    path = write_sweep(
        tmp_path,
        {"gbs16": {"train.global_batch_size": 16}, "mbs1": {"train.micro_batch_size": 1}},
    )
    cache = tmp_path / "cache"
    code, out = sweep(path, blend_json, cache, "--json")
    assert code == 130 and "run the same command again to resume" in out
    rec = record_of(cache)
    assert [e["name"] for e in rec["variants"]] == ["base"]  # Ctrl-C is not a failure
    assert rec["pending"] == ["gbs16", "mbs1"]

    code, out = sweep(path, blend_json, cache, "--json")
    assert code == 0, out
    runs = launched(launches)
    assert [x["resume"] for x in runs] == [0, 0, 5, 0]  # gbs16 resumed from its checkpoint
    assert runs[1]["run_dir"] == runs[2]["run_dir"]
    rec = json.loads(out.strip().splitlines()[-1])
    by = {e["name"]: e for e in rec["variants"]}
    assert [by[n]["status"] for n in ("base", "gbs16", "mbs1")] == ["reused", "done", "done"]
    gbs16 = json.loads((Path(by["gbs16"]["run_path"]) / "record.json").read_text())
    assert [x["start_iteration"] for x in gbs16["launches"]] == [0, 5]
    assert gbs16["summary"]["iterations"] == 10


def test_a_mock_sweep_needs_no_blend(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, {"tp2": {"tp": 2}}, BASE | {"mock": True})
    args = ["sweep", str(path), "--cache-dir", str(tmp_path / "cache"), "--dry-run", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.strip().splitlines()[-1])["variants"]
    assert [(r["name"], r["action"]) for r in rows] == [("base", "run"), ("tp2", "run")]
