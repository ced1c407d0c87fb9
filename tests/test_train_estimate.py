"""pipe train's preflight: the memory estimate against measured runs, the token budget, and the
refusal of a plan that cannot fit, before any data is built or anything launched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_jsonl

from pipeline import sample
from pipeline.artifact import Outcome
from pipeline.cli import main
from pipeline.train import MOCK
from pipeline.train_preflight import preflight
from training.budget import split_tokens, token_budget
from training.memory import GIB, TOLERANCE, Capacity, estimate_memory, stage_estimates
from training.plan import Rendezvous, TrainPlan, build_plan
from training.switches import Installed

RESULTS = Path(__file__).resolve().parents[1] / "training" / "gpu" / "results"
RECORDS = sorted(RESULTS.glob("*_record.json"))
NAMES = [p.name.removesuffix("_record.json") for p in RECORDS]
TE = Installed(True, False, False, False, False)
NOTHING = Installed(False, False, False, False, False)


@pytest.mark.parametrize(
    "record", RECORDS, ids=[p.name.removesuffix("_record.json") for p in RECORDS]
)
def test_estimate_is_within_tolerance_of_every_measured_peak(record: Path) -> None:
    """Each rank's max_memory_allocated on the H200s (1-4 GPUs, TP/DP/PP, TE and local layers)
    against the estimate for that rank's pipeline stage, from the plan the run recorded."""
    run = json.loads(record.read_text())
    plan = TrainPlan(**run["config"])
    stages = stage_estimates(plan)
    per_stage = plan.world_size // plan.pp  # Megatron's rank order puts PP outermost
    assert len(run["memory_per_rank"]) == plan.world_size
    for rank in run["memory_per_rank"]:
        measured = rank["max_allocated_bytes"] / GIB
        estimate = stages[rank["rank"] // per_stage].peak_gib
        assert abs(estimate - measured) <= TOLERANCE * measured, (rank["rank"], estimate, measured)
    assert estimate_memory(plan).peak_gib == max(s.peak_gib for s in stages)


def test_records_cover_the_layouts() -> None:
    """The check above is only as good as its records: TP, DP, PP, TE and local all appear."""
    plans = [TrainPlan(**json.loads(p.read_text())["config"]) for p in RECORDS]
    assert {p.tp for p in plans} >= {1, 2, 4} and {p.pp for p in plans} >= {1, 2}
    assert {p.dp for p in plans} >= {1, 2, 4} and {p.transformer_engine for p in plans} == {
        True,
        False,
    }


def _plan(model: str, tp: int | None, gpus: int = 8, installed: Installed = TE, **kw) -> TrainPlan:
    return build_plan(
        model=model, data=MOCK, mock=True, nproc_per_node=gpus, tp=tp, installed=installed, **kw
    )


def _launch(model: str, tp: int | None, gpus: int = 8, overrides: tuple = ()) -> dict:
    return dict(
        model=model,
        nproc_per_node=gpus,
        tp=tp,
        pp=1,
        precision="bf16",
        overrides=overrides,
        rendezvous=Rendezvous(),
    )


def test_8b_at_tp1_does_not_fit_80gb_and_names_what_would() -> None:
    plan = _plan("8b", 1)
    checks = preflight(plan, Capacity(80, "test"), token_budget(plan, None), _launch("8b", 1), MOCK)
    assert not checks.fits and checks.memory.needed_gib > 80
    # 8 GiB per 1e9 params of weights+grads at DP=8 with the distributed optimizer, no less.
    assert checks.memory.weights_gib > plan.num_params * (6 + 12 / 8) / GIB * 0.99
    assert any(f.startswith("--tp 2 (~") for f in checks.fixes)
    warning = checks.memory_warning()
    assert warning is not None and "80 GiB (test)" in warning and "--tp 2" in warning
    assert checks.warnings()[0] == warning
    # What it suggests does fit: TP=2 halves weights and activations.
    at_tp2 = estimate_memory(_plan("8b", 2))
    assert at_tp2.needed_gib <= 80 and at_tp2.peak_gib < checks.memory.peak_gib * 0.6


def test_layout_and_recompute_move_the_estimate_the_right_way() -> None:
    base = estimate_memory(_plan("1b", 1, gpus=1, installed=NOTHING))
    dp4 = estimate_memory(_plan("1b", 1, gpus=4))  # TE: distributed optimizer over DP=4
    te = estimate_memory(_plan("1b", 1, gpus=1))
    full = estimate_memory(_plan("1b", 1, gpus=1, overrides=["model.recompute_granularity=full"]))
    first, last = stage_estimates(_plan("1b", 1, gpus=2, pp=2))
    assert te.activations_gib < base.activations_gib  # fused attention keeps no softmax
    assert dp4.weights_gib < te.weights_gib  # optimizer state sharded over DP
    # Full recompute keeps one input per layer; the logits (20 GiB at micro batch 8) remain.
    assert full.activations_gib < te.activations_gib * 0.65
    # PP=2: each stage half the layers; the first holds 2 micro batches, the last the logits.
    assert last.weights_gib < te.weights_gib and (first.in_flight, last.in_flight) == (2, 1)
    assert first.activations_gib < last.activations_gib


def test_epochs_per_dataset_and_warnings() -> None:
    plan = _plan("tiny", 1, gpus=1, overrides=["train.train_iters=100"])  # 8 x 256 per iteration
    splits = {
        "train": {
            "a": {"tokens": 60_000, "weight": 0.7},
            "b": {"tokens": 40_000, "weight": 0.3},
        },
        "valid": {"a": {"tokens": 10_000, "weight": 0.7}},
        "test": {},
    }
    budget = token_budget(plan, splits)
    assert budget.train_consumed == 100 * 8 * 256 == 204_800
    assert budget.train_tokens == 100_000 and budget.epochs == pytest.approx(2.048)
    assert [d.epochs for d in budget.datasets] == pytest.approx([2.389333, 1.536], rel=1e-5)
    assert budget.iterations_per_epoch == 49  # ceil(100_000 / 2048)
    # Evaluations every 50 iterations plus one at the end, 10 iterations each.
    assert (budget.evaluations, budget.valid_consumed) == (3, 3 * 10 * 2048)
    repeat, valid = budget.warnings()
    assert "2.05 epochs of the 100,000" in repeat and "a 2.39x, b 1.54x" in repeat
    assert "each evaluation reads 20,480 tokens, more than the 10,000" in valid
    off = _plan("tiny", 1, gpus=1, overrides=["validation.eval_interval=null"])
    no_eval = token_budget(off, splits)
    assert (no_eval.evaluations, no_eval.valid_consumed) == (0, 0)
    # Under one epoch, with a valid split large enough: nothing to warn about...
    splits["valid"]["a"]["tokens"] = 50_000
    short = _plan("tiny", 1, gpus=1, overrides=["train.train_iters=30"])
    assert token_budget(short, splits).epochs == pytest.approx(30 * 2048 / 100_000)
    assert not token_budget(short, splits).warnings()
    # ...unless one dataset's weight outruns its size: a blend samples by weight.
    splits["train"] = {
        "small": {"tokens": 20_000, "weight": 9.0},
        "large": {"tokens": 80_000, "weight": 1.0},
    }
    skewed = token_budget(short, splits)
    assert skewed.epochs < 1 and [d.weight for d in skewed.datasets] == [0.9, 0.1]
    (warning,) = skewed.warnings()
    assert "0.61 epochs" in warning and "small 2.76x" in warning and "large" not in warning


def test_the_issue_example_gcide_under_the_1b_preset() -> None:
    """GCIDE's 12.2 M train tokens under the 1b preset's 1000 x 32,768 tokens: 2.7 epochs."""
    manifest = {
        "config": {"weights": {"gcide": 1.0}},
        "stats": {
            "train": {"gcide": {"docs": 9000, "tokens": 12_200_000}},
            "valid": {"gcide": {"docs": 45, "tokens": 60_000}},
            "test": {},
        },
    }
    budget = token_budget(_plan("1b", 1, gpus=1), split_tokens(manifest))
    assert budget.train_consumed == 32_768_000
    assert budget.epochs == pytest.approx(2.686, abs=1e-3)
    assert budget.warnings()[0].startswith("the train data repeats")
    assert split_tokens({"config": {}, "stats": {"tokenizer": {}}}) is None


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", *args])
    return result.exit_code, result.output


MOCK_8B = ("--mock", "--model", "8b", "--tp", "1", "--nproc-per-node", "8", "--gpu-memory", "80")


def test_dry_run_json_states_memory_and_budget(tmp_path: Path) -> None:
    code, out = _train(*MOCK_8B, "--dry-run", "--json", "--cache-dir", str(tmp_path))
    assert code == 0, out
    plan = json.loads(out.strip().splitlines()[-1])
    memory = plan["memory"]
    assert memory["fits"] is False and memory["capacity_gib"] == 80
    assert memory["capacity_source"] == "--gpu-memory" and memory["tolerance"] == TOLERANCE
    assert (
        memory["needed_gib"]
        > memory["peak_gib"]
        == pytest.approx(memory["weights_gib"] + memory["activations_gib"], abs=0.02)
    )
    budget = plan["token_budget"]
    assert budget["train_consumed"] == 1000 * 64 * 8192 and budget["epochs"] is None
    assert "--mock" in budget["unknown"]
    assert plan["warnings"] and plan["warnings"][0].startswith("the plan needs ~")
    # The text form says the same in rows, and the warning on its own line.
    code, out = _train(*MOCK_8B, "--dry-run", "--cache-dir", str(tmp_path))
    assert code == 0 and "    memory: ~" in out and "does NOT fit" in out
    assert "\nwarning: the plan needs ~" in out


def test_a_run_that_cannot_fit_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _train(*MOCK_8B, "--cache-dir", str(tmp_path))
    assert code == 1
    line = out.strip()
    assert line.startswith("error: the plan needs ~") and "\n" not in line
    assert "but a GPU has 80 GiB (--gpu-memory)" in line and "--no-memory-check" in line
    assert not list(tmp_path.rglob("plan.json"))
    # --no-memory-check goes on to the launch (stood in for here: there is no GPU).
    launched = []

    def fake_run(step, cache, ctx, fresh) -> Outcome:
        launched.append(step.runtime["plan"])
        return Outcome("train", step.key, tmp_path / step.key, {}, False, None)

    monkeypatch.setattr("pipeline.train.run", fake_run)
    code, out = _train(*MOCK_8B, "--no-memory-check", "--json", "--cache-dir", str(tmp_path))
    assert code == 0, out
    assert launched and launched[0]["model"] == "8b" and launched[0]["tp"] == 1


def test_gpu_memory_must_be_a_size(tmp_path: Path) -> None:
    code, out = _train(*MOCK_8B[:-1], "0", "--dry-run", "--cache-dir", str(tmp_path))
    assert code == 2 and "Invalid value for '--gpu-memory'" in out


def test_dry_run_estimates_epochs_before_tokenizing(
    small_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any tokenizing the split sizes come from a sample of the source (marked as an
    estimate, and building nothing); once tokenized, the counts; the two agree."""
    write_jsonl(tmp_path / "a.jsonl.gz", 2000, 3, "a")
    blend = tmp_path / "blend.json"
    body = {
        "name": "e",
        "tokenizer": str(small_tokenizer),
        "split": {"valid": 0.05, "test": 0.05},
        "datasets": [{"name": "a", "weight": 1.0, "files": "a.jsonl.gz"}],
    }
    blend.write_text(json.dumps(body))
    cache = tmp_path / "cache"
    monkeypatch.setattr(sample, "SAMPLE_DOCS", 200)  # a sample, not the whole file
    args = ("--blend", str(blend), "--model", "tiny", "--nproc-per-node", "1", "--dry-run")
    code, out = _train(*args, "--json", "--cache-dir", str(cache))
    assert code == 0, out
    before = json.loads(out.strip().splitlines()[-1])["token_budget"]
    assert before["estimated"] == "estimated from a sample of 200 docs; not tokenized yet"
    assert before["unknown"] is None and before["epochs"] > 0
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]  # nothing built
    code, out = _train(*args, "--cache-dir", str(cache))
    assert code == 0 and "epochs of the ~" in out and "estimated from a sample of 200" in out
    res = CliRunner().invoke(main, ["tokenize", "--blend", str(blend), "--cache-dir", str(cache),
                                    "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    code, out = _train(*args, "--json", "--cache-dir", str(cache))
    after = json.loads(out.strip().splitlines()[-1])["token_budget"]
    assert after["estimated"] is None and after["train_tokens"] > 0
    assert before["train_tokens"] == pytest.approx(after["train_tokens"], rel=0.2)
    assert before["valid_tokens"] == pytest.approx(after["valid_tokens"], rel=0.3)
    assert before["epochs"] == pytest.approx(after["epochs"], rel=0.2)
