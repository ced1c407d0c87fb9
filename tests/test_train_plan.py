"""pipe train's plan: layout choice and refusals, overrides, precision, torchrun, run key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.layout import LayoutError, ModelDims, resolve_layout
from training.overrides import OverrideError, get_int, parse_overrides, parse_value
from training.plan import (
    DataSource,
    PlanError,
    Rendezvous,
    build_plan,
    check_precision,
    place,
    resolve_nproc,
)
from training.presets import PRESETS, get_preset
from training.switches import Installed

NOTHING = Installed(False, False, False, False, False)

DATA = DataSource(
    blend_json="/data/blend.json", tokenizer="/tok", vocab_size=131072, eod_id=2, artifact="abc"
)


def dims(heads: int = 32, groups: int = 8, layers: int = 16, gbs: int = 16, mbs: int = 2):
    return ModelDims(layers, heads, groups, gbs, mbs)


@pytest.mark.parametrize(
    ("gpus", "tp", "dp"),
    [(8, 2, 4), (4, 2, 2), (2, 2, 1), (1, 1, 1), (6, 2, 3)],
)
def test_default_tp_is_two_where_it_fits(gpus: int, tp: int, dp: int) -> None:
    layout = resolve_layout(gpus, 1, None, 1, dims(gbs=24 if gpus == 6 else 16))
    assert (layout.tp, layout.pp, layout.dp) == (tp, 1, dp)
    assert layout.world_size == gpus


def test_default_tp_falls_back_when_heads_are_odd() -> None:
    layout = resolve_layout(4, 1, None, 1, dims(heads=3, groups=3, gbs=12, mbs=1))
    assert layout.tp == 1 and layout.dp == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((6, 1, 4, 1, dims()), "world size 6 (1 node(s) x 6) is not divisible by TP x PP = 4 x 1"),
        ((8, 1, 2, 3, dims()), "not divisible by TP x PP = 2 x 3 = 6"),
        ((8, 1, 8, 1, dims(heads=12, groups=4)), "12 attention heads not divisible by TP=8"),
        ((8, 1, 8, 1, dims(heads=32, groups=4)), "4 query groups are not divisible by TP=8"),
        ((8, 1, 2, 4, dims(layers=6, gbs=16)), "6 layers are not divisible by PP=4"),
        ((8, 1, 2, 1, dims(gbs=12)), "global batch 12 is not divisible by micro batch x DP = 2"),
        ((4, 2, 8, 1, dims()), "TP=8 must divide the 4 GPUs of one node"),
    ],
)
def test_impossible_layouts_are_refused_with_numbers(args: tuple, message: str) -> None:
    with pytest.raises(LayoutError) as err:
        resolve_layout(*args)
    assert message in str(err.value)


def test_multi_node_world_counts_every_node() -> None:
    layout = resolve_layout(8, 2, None, 2, dims())
    assert (layout.world_size, layout.tp, layout.pp, layout.dp) == (16, 2, 2, 4)


def test_overrides_parse_and_refuse() -> None:
    parsed = parse_overrides(["train.train_iters=5000", "+logger.foo=bar", "checkpoint.save=/p"])
    assert [o.key for o in parsed] == ["train.train_iters", "logger.foo", "checkpoint.save"]
    assert parsed[1].text == "+logger.foo=bar"
    assert get_int(parsed, "train.train_iters", 1) == 5000
    assert get_int(parsed, "train.global_batch_size", 7) == 7
    bad = {
        "train.train_iters": "not KEY=VALUE",
        "=3": "not KEY=VALUE",
        "trian.train_iters=3": "unknown section 'trian'",
        "train=3": "names a whole section",
        "model.tensor_model_parallel_size=4": "use --tp",
        "dataset.blend=x": "use --blend",
        "tokenizer.tokenizer_model=x": "tokenized with",
        "train.a-b=1": "not a dotted key",
    }
    for arg, message in bad.items():
        with pytest.raises(OverrideError, match=message):
            parse_overrides([arg])
    with pytest.raises(OverrideError, match="given twice"):
        parse_overrides(["train.train_iters=1", "train.train_iters=2"])
    with pytest.raises(OverrideError, match="must be an integer"):
        get_int(parse_overrides(["train.train_iters=lots"]), "train.train_iters", 1)


def test_parse_value_reads_yaml_scalars() -> None:
    assert parse_value("null") is None
    assert parse_value("true") is True
    assert parse_value("64") == 64
    assert parse_value("3e-4") == pytest.approx(3e-4)
    assert parse_value("'x y'") == "x y"
    assert parse_value("/path") == "/path"


def test_precision_needs_te_for_fp8_and_nvfp4() -> None:
    assert check_precision("bf16", has_te=False) == "bf16_mixed"
    assert check_precision("fp8", has_te=True) == "bf16_with_fp8_current_scaling_mixed"
    assert check_precision("fp8-current", has_te=True) == "bf16_with_fp8_current_scaling_mixed"
    assert check_precision("fp8-delayed", has_te=True) == "bf16_with_fp8_delayed_scaling_mixed"
    assert check_precision("nvfp4", has_te=True, capability=(10, 0)) == "bf16_with_nvfp4_mixed"
    for precision in ("fp8", "fp8-current", "fp8-delayed", "nvfp4"):
        with pytest.raises(PlanError, match="needs Transformer Engine"):
            check_precision(precision, has_te=False)


def test_nvfp4_is_refused_before_blackwell(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PlanError, match=r"nvfp4 needs a Blackwell GPU .* this one is 9\.0"):
        check_precision("nvfp4", has_te=True, capability=(9, 0))
    # Through the plan, with the capability this machine reports (an H200's) injected.
    monkeypatch.setattr("training.options.gpu_capability", lambda: (9, 0))
    te = Installed(True, False, False, False, False)
    with pytest.raises(PlanError, match="nvfp4 needs a Blackwell GPU"):
        build_plan(
            model="tiny", data=DATA, nproc_per_node=1, precision="nvfp4", mock=True, installed=te
        )
    fp8 = build_plan(
        model="tiny", data=DATA, nproc_per_node=1, precision="fp8-delayed", mock=True, installed=te
    )
    assert fp8.mixed_precision == "bf16_with_fp8_delayed_scaling_mixed"


def test_presets_have_llama_shapes() -> None:
    p1b = get_preset("1b")
    assert (p1b.num_layers, p1b.hidden_size, p1b.ffn_hidden_size) == (16, 2048, 8192)
    assert (p1b.num_attention_heads, p1b.num_query_groups, p1b.kv_channels) == (32, 8, 64)
    # Llama-3.2-1B has 1.236B parameters with its 128,256 vocabulary.
    assert p1b.num_params(128256) == pytest.approx(1.2358e9, rel=1e-3)
    # Llama-3.1-8B: 8.03B parameters (untied embeddings).
    assert get_preset("8b").num_params(128256) == pytest.approx(8.03e9, rel=1e-3)
    assert set(PRESETS) == {"tiny", "1b", "3b", "8b"}
    with pytest.raises(ValueError, match="unknown model 'huge'"):
        get_preset("huge")


def test_plan_reads_overrides_into_layout_and_batch() -> None:
    plan = build_plan(
        model="1b",
        data=DATA,
        nproc_per_node=8,
        overrides=["train.global_batch_size=64", "train.train_iters=30"],
        installed=NOTHING,
    )
    assert (plan.tp, plan.pp, plan.dp, plan.world_size) == (2, 1, 4, 8)
    assert plan.global_batch_size == 64 and plan.train_iters == 30
    assert plan.tokens_per_iteration == 64 * 2048
    assert plan.layer_spec == "local" and plan.mixed_precision == "bf16_mixed"
    with pytest.raises(LayoutError, match="global batch 18"):
        build_plan(
            model="1b", data=DATA, nproc_per_node=8, overrides=["train.global_batch_size=18"]
        )
    with pytest.raises(PlanError, match="no blend.json"):
        build_plan(model="tiny", data=DataSource(None, "t", 10, 1), nproc_per_node=1)


def test_run_identity_ignores_layout_and_run_control() -> None:
    base = build_plan(model="tiny", data=DATA, nproc_per_node=1, installed=NOTHING)
    stopped = build_plan(
        model="tiny",
        data=DATA,
        nproc_per_node=4,
        overrides=["train.exit_interval=25", "logger.log_interval=5"],
        installed=NOTHING,
    )
    longer = build_plan(
        model="tiny", data=DATA, nproc_per_node=1, overrides=["train.train_iters=60"]
    )
    assert base.identity() == stopped.identity()
    assert base.identity() != longer.identity()


def test_torchrun_command_single_and_multi_node(tmp_path: Path) -> None:
    plan = place(build_plan(model="tiny", data=DATA, nproc_per_node=2), tmp_path, "key1")
    cmd = plan.torchrun
    assert cmd[-4:] == ["--standalone", "-m", "training.entry", str(tmp_path / "plan.json")]
    assert "--nproc_per_node=2" in cmd
    assert plan.env["NCCL_NVLS_ENABLE"] == "0"
    multi = build_plan(
        model="1b",
        data=DATA,
        nproc_per_node=8,
        rendezvous=Rendezvous(nnodes=2, node_rank=1, endpoint="head:29500"),
    )
    cmd = place(multi, tmp_path, "key2").torchrun
    assert "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--rdzv-endpoint=head:29500" in cmd and "--rdzv-id=key2" in cmd
    assert multi.world_size == 16 and multi.dp == 8
    lonely = build_plan(model="1b", data=DATA, nproc_per_node=8, rendezvous=Rendezvous(nnodes=2))
    with pytest.raises(PlanError, match="needs --rdzv-endpoint"):
        place(lonely, tmp_path, "k")


def test_resume_point_is_read_from_the_run_dir(tmp_path: Path) -> None:
    plan = build_plan(model="tiny", data=DATA, nproc_per_node=1)
    assert place(plan, tmp_path, "k").resume_iteration is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("25\n")
    assert place(plan, tmp_path, "k").resume_iteration == 25


def test_nproc_auto_needs_a_gpu() -> None:
    assert resolve_nproc("4") == 4
    assert resolve_nproc("auto", gpus=2) == 2
    with pytest.raises(PlanError, match="no GPU is visible"):
        resolve_nproc("auto", gpus=0)
    with pytest.raises(PlanError, match="a number or 'auto'"):
        resolve_nproc("many")


def test_micro_batch_is_the_presets_largest_that_fits_each_dp_rank() -> None:
    # 1b: global 16, micro batch up to 8 (measured best on one H200).
    sizes = {
        n: build_plan(model="1b", data=DATA, nproc_per_node=n, tp=1, installed=NOTHING)
        for n in (1, 2, 4, 8)
    }
    assert {n: p.micro_batch_size for n, p in sizes.items()} == {1: 8, 2: 8, 4: 4, 8: 2}
    # The default layout on 8 GPUs (TP=2 x DP=4) gets 4 sequences per rank.
    assert (
        build_plan(model="1b", data=DATA, nproc_per_node=8, installed=NOTHING).micro_batch_size == 4
    )
    # An explicit micro batch is kept, and checked.
    plan = build_plan(
        model="1b",
        data=DATA,
        nproc_per_node=1,
        overrides=["train.micro_batch_size=2"],
        installed=NOTHING,
    )
    assert plan.micro_batch_size == 2


def test_layer_spec_is_part_of_the_run_identity() -> None:
    te = Installed(True, False, False, False, False)
    local = build_plan(model="tiny", data=DATA, nproc_per_node=1, installed=NOTHING)
    with_te = build_plan(model="tiny", data=DATA, nproc_per_node=1, installed=te)
    assert local.identity() != with_te.identity()
