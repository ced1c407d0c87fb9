"""TE/apex-dependent switches: decided from what is installed, recorded in the plan, never a
combination that crashes (TE + apex, TE without apex, neither)."""

from __future__ import annotations

import json

import pytest

from training.entry import apply_switches
from training.overrides import OverrideError, parse_overrides
from training.plan import DataSource, build_plan
from training.switches import Installed, decide, describe, resolve

DATA = DataSource(blend_json="/d/blend.json", tokenizer="/tok", vocab_size=131072, eod_id=2)
TE_AND_APEX = Installed(True, True, True, True, True)
TE_ONLY = Installed(True, False, False, False, False)
NOTHING = Installed(False, False, False, False, False)
APEX_ONLY = Installed(False, True, True, True, True)


def values(installed: Installed, nproc: int = 1, tp: int | None = None, *overrides: str) -> dict:
    plan = build_plan(
        model="1b",
        data=DATA,
        nproc_per_node=nproc,
        tp=tp,
        overrides=list(overrides),
        installed=installed,
    )
    assert plan.installed == installed.as_dict()
    return {k: v["value"] for k, v in plan.switches.items()}


def test_te_without_apex_turns_off_gradient_accumulation_fusion() -> None:
    # The crash this fixes: Bridge turns the fusion on when TE imports, but the output layer
    # (ColumnParallelLinear) needs apex's fused_weight_gradient_mlp_cuda.
    v = values(TE_ONLY, 2, 2)
    assert v["model.gradient_accumulation_fusion"] is False
    assert v["model.masked_softmax_fusion"] is False
    assert v["model.sequence_parallel"] is True
    assert v["model.apply_rope_fusion"] is True
    assert v["optimizer.use_distributed_optimizer"] is True
    assert v["ddp.use_distributed_optimizer"] is True
    assert v["model.cross_entropy_loss_fusion"] is True
    assert v["model.persist_layer_norm"] is False  # TE normalises


def test_te_and_apex_use_every_fusion() -> None:
    v = values(TE_AND_APEX, 4, 2)
    assert v["model.gradient_accumulation_fusion"] is True
    assert v["model.masked_softmax_fusion"] is True
    assert v["model.sequence_parallel"] is True
    assert v["ddp.overlap_grad_reduce"] is True and v["ddp.overlap_param_gather"] is True


def test_neither_turns_off_everything_that_needs_a_kernel() -> None:
    v = values(NOTHING, 2, 2)
    for key in (
        "model.gradient_accumulation_fusion",
        "model.masked_softmax_fusion",
        "model.persist_layer_norm",
        "model.sequence_parallel",
        "model.apply_rope_fusion",
        "optimizer.use_distributed_optimizer",
        "ddp.use_distributed_optimizer",
        "ddp.overlap_grad_reduce",
        "ddp.overlap_param_gather",
    ):
        assert v[key] is False, key
    # Fusions that are plain torch/jit stay on.
    assert v["model.cross_entropy_loss_fusion"] is True
    assert v["model.bias_activation_fusion"] is True


def test_apex_without_te_keeps_distributed_optimizer_and_local_fusions() -> None:
    v = values(APEX_ONLY, 2, 1)
    assert v["optimizer.use_distributed_optimizer"] is True
    assert v["model.gradient_accumulation_fusion"] is True
    assert v["model.sequence_parallel"] is False  # local norms refuse it
    assert v["ddp.overlap_grad_reduce"] is True  # DP=2
    ln = {s.key: s.value for s in decide(APEX_ONLY, tp=1, dp=1, normalization="LayerNorm")}
    assert ln["model.persist_layer_norm"] is True
    assert ln["ddp.overlap_grad_reduce"] is False  # DP=1: nothing to overlap


def test_one_gpu_has_no_sequence_parallel_or_overlap() -> None:
    v = values(TE_AND_APEX, 1)
    assert v["model.sequence_parallel"] is False
    assert v["ddp.overlap_grad_reduce"] is False


def test_override_wins_and_is_marked_but_missing_kernels_are_refused() -> None:
    plan = build_plan(
        model="1b",
        data=DATA,
        nproc_per_node=1,
        overrides=["model.cross_entropy_loss_fusion=false"],
        installed=TE_ONLY,
    )
    entry = plan.switches["model.cross_entropy_loss_fusion"]
    assert entry == {
        "value": False,
        "why": "set by model.cross_entropy_loss_fusion=false",
        "default": True,
    }
    with pytest.raises(OverrideError, match="needs apex"):
        values(TE_ONLY, 1, None, "model.gradient_accumulation_fusion=true")
    with pytest.raises(OverrideError, match="needs transformer_engine"):
        values(NOTHING, 2, 2, "model.sequence_parallel=true")
    # Turning one off is always allowed.
    assert (
        values(TE_AND_APEX, 1, None, "model.gradient_accumulation_fusion=false")[
            "model.gradient_accumulation_fusion"
        ]
        is False
    )


def test_plan_json_shows_every_decision_with_a_reason() -> None:
    plan = build_plan(model="1b", data=DATA, nproc_per_node=1, installed=TE_ONLY)
    shown = json.loads(json.dumps(plan.as_dict()))
    assert shown["installed"]["transformer_engine"] is True
    for key, entry in shown["switches"].items():
        assert entry["why"], key
    assert len(shown["switches"]) == len(decide(TE_ONLY, tp=1, dp=1))


def test_entry_sets_each_switch_on_the_config_sections() -> None:
    class Section:
        pass

    cfg = Section()
    for name in ("model", "optimizer", "ddp"):
        setattr(cfg, name, Section())
    switches = resolve(decide(TE_ONLY, tp=2, dp=2), parse_overrides([]))
    apply_switches(cfg, switches)
    assert cfg.model.gradient_accumulation_fusion is False
    assert cfg.model.sequence_parallel is True
    assert cfg.optimizer.use_distributed_optimizer is True
    assert cfg.ddp.overlap_param_gather is True


def test_probe_sees_this_machine() -> None:
    # This CPU machine has neither TE nor apex installed.
    found = Installed.probe()
    assert found.transformer_engine is False and found.apex is False


def test_dry_run_line_names_each_switch() -> None:
    line = describe(resolve(decide(TE_ONLY, tp=2, dp=1), parse_overrides([])))
    assert "gradient_accumulation_fusion=False" in line
    assert "sequence_parallel=True" in line
    assert "optimizer.use_distributed_optimizer=True" in line
