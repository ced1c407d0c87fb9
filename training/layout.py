"""Parallel layout: how many GPUs, and how they split into tensor, pipeline and data parallel.

Every check Megatron would make minutes into a launch (after torchrun, NCCL and model set-up) is
made here first, so an impossible layout fails in a second with the numbers that don't fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# TP above 2 rarely pays on a dense model up to 8B; the default stays at or below this.
DEFAULT_MAX_TP = 2


class LayoutError(ValueError):
    """A layout Megatron would refuse, said with the numbers."""


@dataclass(frozen=True)
class Layout:
    """World = nnodes x nproc_per_node = tp x pp x dp."""

    nnodes: int
    nproc_per_node: int
    tp: int
    pp: int
    dp: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "world_size": self.world_size}


@dataclass(frozen=True)
class ModelDims:
    """The model numbers a layout must divide."""

    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    global_batch_size: int
    micro_batch_size: int


def default_tp(world_size: int, nproc_per_node: int, pp: int, dims: ModelDims) -> int:
    """Largest TP up to DEFAULT_MAX_TP that fits one node and divides GPUs and heads."""
    for tp in range(min(DEFAULT_MAX_TP, nproc_per_node), 0, -1):
        if (
            world_size % (tp * pp) == 0
            and nproc_per_node % tp == 0
            and dims.num_attention_heads % tp == 0
            and dims.num_query_groups % tp == 0
        ):
            return tp
    return 1


def resolve_layout(
    nproc_per_node: int, nnodes: int, tp: int | None, pp: int, dims: ModelDims
) -> Layout:
    """Pick TP when not given, then refuse anything Megatron would refuse."""
    if nproc_per_node < 1 or nnodes < 1:
        raise LayoutError(f"need at least one process and node (got {nproc_per_node}, {nnodes})")
    if pp < 1 or (tp is not None and tp < 1):
        raise LayoutError(f"TP and PP must be at least 1 (got TP={tp}, PP={pp})")
    world = nproc_per_node * nnodes
    if tp is None:
        tp = default_tp(world, nproc_per_node, pp, dims)
    if world % (tp * pp):
        raise LayoutError(
            f"world size {world} ({nnodes} node(s) x {nproc_per_node}) is not divisible by "
            f"TP x PP = {tp} x {pp} = {tp * pp}"
        )
    if tp > nproc_per_node or nproc_per_node % tp:
        raise LayoutError(f"TP={tp} must divide the {nproc_per_node} GPUs of one node")
    if dims.num_attention_heads % tp:
        raise LayoutError(f"{dims.num_attention_heads} attention heads not divisible by TP={tp}")
    if dims.num_query_groups % tp:
        raise LayoutError(f"{dims.num_query_groups} query groups are not divisible by TP={tp}")
    if dims.num_layers % pp:
        raise LayoutError(f"{dims.num_layers} layers are not divisible by PP={pp}")
    dp = world // (tp * pp)
    per_step = dims.micro_batch_size * dp
    if dims.global_batch_size % per_step:
        raise LayoutError(
            f"global batch {dims.global_batch_size} is not divisible by micro batch x DP = "
            f"{dims.micro_batch_size} x {dp} = {per_step}"
        )
    return Layout(nnodes=nnodes, nproc_per_node=nproc_per_node, tp=tp, pp=pp, dp=dp)
