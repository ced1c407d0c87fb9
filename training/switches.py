"""Every Transformer Engine- and apex-dependent switch, decided from what is installed.

Megatron-Bridge's own defaults assume a container with both: `gradient_accumulation_fusion`
turns on whenever TE imports, yet the output layer (Megatron's `ColumnParallelLinear`, used with
TE layers too) needs apex's `fused_weight_gradient_mlp_cuda` and raises before iteration 1
without it. So pipe decides each switch itself, from what this machine has, and writes the value
and the reason into the plan (`pipe train --dry-run --json` shows them under `switches`). The
entry sets them on Bridge's config before the user's overrides, which win; an override that
turns on a switch whose kernel is missing is refused here, before launch.

Probing uses `importlib.util.find_spec`: it imports nothing, so planning stays fast on a
machine with neither TE nor apex (or with no GPU).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

from training.overrides import Override, OverrideError, parse_value


class SwitchError(OverrideError):
    """An override that turns on a switch this machine cannot run."""


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Installed:
    """The optional kernels a launch could use (module names as their wheels install them)."""

    transformer_engine: bool  # transformer_engine (its torch extension lives inside it)
    apex: bool  # apex (FusedAdam for the distributed optimizer)
    apex_gradient_accumulation: bool  # fused_weight_gradient_mlp_cuda
    fused_softmax: bool  # scaled_masked_softmax_cuda (apex or Megatron's kernels)
    apex_persist_layer_norm: bool  # fast_layer_norm (apex contrib)

    @classmethod
    def probe(cls) -> Installed:
        return cls(
            transformer_engine=_found("transformer_engine"),
            apex=_found("apex"),
            apex_gradient_accumulation=_found("fused_weight_gradient_mlp_cuda"),
            fused_softmax=_found("scaled_masked_softmax_cuda"),
            apex_persist_layer_norm=_found("fast_layer_norm"),
        )

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class Switch:
    """One decision: the Bridge config key, its value, why, and what it needs (None: nothing)."""

    key: str
    value: bool
    why: str
    needs: str | None = None  # the missing piece, when the value is False for lack of it


def decide(
    installed: Installed, *, tp: int, dp: int, normalization: str = "RMSNorm"
) -> list[Switch]:
    """The switches for a launch on a machine with `installed`, in the order they are set."""
    te, apex = installed.transformer_engine, installed.apex
    dist_opt = te or apex
    local_ln = not te and normalization == "LayerNorm"
    return [
        Switch(
            "model.gradient_accumulation_fusion",
            installed.apex_gradient_accumulation,
            "fuses weight-gradient accumulation into the GEMM: TE linears do it themselves, but "
            "the output layer is Megatron's ColumnParallelLinear, which needs apex's "
            "fused_weight_gradient_mlp_cuda with or without TE",
            None
            if installed.apex_gradient_accumulation
            else "apex (fused_weight_gradient_mlp_cuda)",
        ),
        Switch(
            "model.masked_softmax_fusion",
            installed.fused_softmax,
            "Megatron's fused softmax kernel (scaled_masked_softmax_cuda) for local attention; "
            + ("TE's fused attention does its own softmax" if te else "else plain torch softmax"),
            None if installed.fused_softmax else "scaled_masked_softmax_cuda (apex/Megatron)",
        ),
        Switch(
            "model.persist_layer_norm",
            local_ln and installed.apex_persist_layer_norm,
            "apex's persistent LayerNorm kernel is used only by Megatron's local LayerNorm; "
            + ("TE normalises" if te else f"{normalization} with local layers"),
            None if installed.apex_persist_layer_norm else "apex (fast_layer_norm)",
        ),
        Switch(
            "model.sequence_parallel",
            tp > 1 and te,
            "splits norms and dropout along the sequence across TP ranks; needs TE's norms "
            "(Megatron's torch norms refuse it)"
            + ("" if tp > 1 else "; TP=1 has nothing to split"),
            None if te else "transformer_engine",
        ),
        Switch(
            "model.apply_rope_fusion",
            te,
            "fused RoPE kernel; it is TE's (Megatron raises without TE)",
            None if te else "transformer_engine",
        ),
        Switch(
            "model.cross_entropy_loss_fusion",
            True,
            "Megatron's native fused vocab-parallel cross entropy: no extra kernel needed "
            "(the 'te' implementation has known stability issues, per Megatron-Core)",
        ),
        Switch(
            "model.bias_activation_fusion",
            True,
            "Megatron's fused SwiGLU (torch.jit): no extra kernel needed",
        ),
        Switch(
            "model.bias_dropout_fusion",
            True,
            "Megatron's fused dropout-add (torch.jit): no extra kernel needed",
        ),
        Switch(
            "optimizer.use_distributed_optimizer",
            dist_opt,
            "shards optimizer state over DP ranks; needs TE's or apex's FusedAdam: with torch "
            "AdamW its checkpoint cannot be reloaded (Megatron-Core asserts on resume)",
            None if dist_opt else "transformer_engine or apex",
        ),
        Switch(
            "ddp.use_distributed_optimizer",
            dist_opt,
            "the DDP side of the distributed optimizer (Bridge turns it on if either flag is set)",
            None if dist_opt else "transformer_engine or apex",
        ),
        Switch(
            "ddp.overlap_grad_reduce",
            dist_opt and dp > 1,
            "overlaps the gradient reduce-scatter with the backward pass"
            + ("" if dp > 1 else "; DP=1 has no gradient reduction"),
            None if dist_opt else "the distributed optimizer",
        ),
        Switch(
            "ddp.overlap_param_gather",
            dist_opt and dp > 1,
            "overlaps the parameter all-gather with the next forward pass"
            + ("" if dp > 1 else "; DP=1 has no parameter gather"),
            None if dist_opt else "the distributed optimizer",
        ),
    ]


def resolve(switches: list[Switch], overrides: list[Override]) -> dict[str, dict]:
    """The plan's `switches`: {key: {value, why}}; a user override wins and is marked so.

    Turning a switch on by override when its kernel is missing is refused: that run would crash
    on the GPUs (or, for the distributed optimizer, be impossible to resume).
    """
    given = {o.key: o for o in overrides}
    out: dict[str, dict] = {}
    for s in switches:
        entry: dict = {"value": s.value, "why": s.why}
        o = given.get(s.key)
        if o is not None:
            value = parse_value(o.value)
            if value is True and not s.value and s.needs:
                raise SwitchError(
                    f"{o.text}: {s.key} needs {s.needs}, which is not installed here ({s.why})"
                )
            entry = {"value": value, "why": f"set by {o.text}", "default": s.value}
        out[s.key] = entry
    return out


def describe(switches: dict[str, dict]) -> str:
    """One line for `pipe train --dry-run`: each switch as key=value (`model.` left out)."""
    return " ".join(f"{k.removeprefix('model.')}={v['value']}" for k, v in switches.items())
