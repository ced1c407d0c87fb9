"""GPU memory per rank for a launch plan, estimated before anything starts.

A run that does not fit fails minutes into start-up (torchrun, NCCL, model build) with an
out-of-memory traceback; this estimate lets `pipe train` say so in a second. It predicts the
peak that `torch.cuda.max_memory_allocated` reports on the busiest rank (what the run records
store), from the model shape and the layout:

- static: bf16 weights (2 B/param), Megatron DDP's fp32 gradient buffer (4 B), and the optimizer
  (fp32 main weights + two Adam moments, 12 B), the latter sharded over DP by the distributed
  optimizer. TP shards the linear layers and the vocabulary; PP gives each stage its layers.
- activations per micro batch, after Korthikanti et al. ("Reducing Activation Recomputation in
  Large Transformer Models", 2022), redone for RMSNorm, GQA and SwiGLU as Megatron stores them;
  PP's first stage holds `pp` micro batches in flight (1F1B), the last one holds the logits.

Checked against every measured run under training/gpu/results (1 to 4 H200s, TP/DP/PP, TE and
local layers): within 25% (tests/test_train_estimate.py). fp8/nvfp4 are estimated as bf16.
Pure Python: torch is imported only to read the local GPU's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from training.overrides import Override, get_int, parse_overrides, parse_value
from training.plan import TrainPlan

GIB = 2**30
TOLERANCE = 0.25  # the worst error against the measured runs stays inside this
# Bytes per parameter: bf16 weight, fp32 gradient buffer; fp32 main weight + Adam's two moments.
WEIGHT_AND_GRAD_BYTES = 2 + 4
OPTIMIZER_BYTES = 4 + 4 + 4
# Logits per token and vocabulary entry: bf16 output, the fp32 copy the fused cross entropy
# makes, and its fp32 softmax/gradient.
LOGIT_BYTES = 2 + 4 + 4
# The first stage's embedding backward makes a dense bf16 gradient with an fp32 accumulator.
EMBEDDING_GRAD_BYTES = 2 + 4
# What max_memory_allocated does not count: the caching allocator's slack (reserved/allocated
# was 1.05-1.08 in the records); the CUDA context with cuBLAS's workspace (0.58 GiB outside
# torch's pool on an H100 with torch alone; TE and cuDNN add to it); with more than one rank,
# NCCL's buffers (an allowance, not measured).
ALLOCATOR_SLACK = 0.08
CUDA_CONTEXT_GIB = 1.0
NCCL_GIB = 1.0
DEFAULT_GPU_GIB = 80.0


@dataclass(frozen=True)
class Shape:
    """The model numbers memory depends on (the preset with the plan's model.* overrides)."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    groups: int
    kv_channels: int
    vocab: int  # padded as Megatron pads it: a multiple of 128 x TP
    tied: bool

    @classmethod
    def of(cls, plan: TrainPlan, overrides: list[Override]) -> Shape:
        p = plan.preset
        divisor = get_int(overrides, "model.make_vocab_size_divisible_by", 128) * plan.tp
        tied = _value(overrides, "model.share_embeddings_and_output_weights", p["tie_embeddings"])
        return cls(
            layers=get_int(overrides, "model.num_layers", p["num_layers"]),
            hidden=get_int(overrides, "model.hidden_size", p["hidden_size"]),
            ffn=get_int(overrides, "model.ffn_hidden_size", p["ffn_hidden_size"]),
            heads=get_int(overrides, "model.num_attention_heads", p["num_attention_heads"]),
            groups=get_int(overrides, "model.num_query_groups", p["num_query_groups"]),
            kv_channels=get_int(overrides, "model.kv_channels", p["kv_channels"]),
            vocab=-(-plan.vocab_size // divisor) * divisor,
            tied=bool(tied),
        )


@dataclass(frozen=True)
class Recompute:
    """Megatron's activation recomputation, as the plan's overrides set it."""

    granularity: str | None  # None, "selective" (core attention) or "full"
    method: str  # "uniform" (groups of `layers`) or "block" (the first `layers` of a stage)
    layers: int

    @classmethod
    def of(cls, overrides: list[Override]) -> Recompute:
        granularity = _value(overrides, "model.recompute_granularity", None)
        method = _value(overrides, "model.recompute_method", None) or "uniform"
        return cls(granularity, str(method), get_int(overrides, "model.recompute_num_layers", 1))


@dataclass(frozen=True)
class MemoryEstimate:
    """The busiest rank's peak (allocated, as the run records measure it) and its parts, GiB."""

    stage: int  # pipeline stage of the busiest rank
    weights_gib: float  # weights, gradients and optimizer state
    activations_gib: float  # everything else at the peak
    peak_gib: float  # what torch.cuda.max_memory_allocated would report
    needed_gib: float  # peak + allocator slack + CUDA context (+ NCCL)
    in_flight: int  # micro batches that stage holds at once
    recompute: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_memory(plan: TrainPlan) -> MemoryEstimate:
    """The busiest rank: the pipeline stage with the largest peak."""
    return max(stage_estimates(plan), key=lambda e: e.peak_gib)


def stage_estimates(plan: TrainPlan) -> list[MemoryEstimate]:
    """One estimate per pipeline stage (every rank of a stage holds the same)."""
    overrides = parse_overrides(plan.overrides)
    shape, recompute = Shape.of(plan, overrides), Recompute.of(overrides)
    micro_batches = plan.global_batch_size // (plan.micro_batch_size * plan.dp)
    return [
        _stage(plan, shape, recompute, stage, min(plan.pp - stage, micro_batches))
        for stage in range(plan.pp)
    ]


def _stage(
    plan: TrainPlan, shape: Shape, recompute: Recompute, stage: int, in_flight: int
) -> MemoryEstimate:
    tp, h = plan.tp, shape.hidden
    first, last = stage == 0, stage == plan.pp - 1
    layers = shape.layers // plan.pp
    embedding = shape.vocab * h / tp
    params = layers * _layer_params(shape, tp) + (embedding if first else 0)
    if last:  # the output layer; tied to the embedding it is a second copy once PP splits them
        params += h + (embedding if not shape.tied or plan.pp > 1 else 0)
    dist_opt = _switch(plan, "optimizer.use_distributed_optimizer")
    static = params * (WEIGHT_AND_GRAD_BYTES + OPTIMIZER_BYTES / (plan.dp if dist_opt else 1))

    tokens = plan.seq_length * plan.micro_batch_size
    full = _layer_activations(plan, shape, recompute) * tokens
    sp = _switch(plan, "model.sequence_parallel")
    layer_input = 2 * h / (tp if sp else 1) * tokens
    stored, transient = _recomputed(recompute, layers, full, layer_input)
    backward = in_flight * stored + transient
    if last:
        backward += LOGIT_BYTES * tokens * shape.vocab / tp
    candidates = [backward]
    if first:  # its embedding's gradient, while later micro batches are still in flight
        candidates.append(EMBEDDING_GRAD_BYTES * embedding + (in_flight - 1) * stored)
    activations = max(candidates)
    peak = (static + activations) / GIB
    overhead = CUDA_CONTEXT_GIB + (NCCL_GIB if plan.world_size > 1 else 0.0)
    return MemoryEstimate(
        stage=stage,
        weights_gib=round(static / GIB, 2),
        activations_gib=round(activations / GIB, 2),
        peak_gib=round(peak, 2),
        needed_gib=round(peak * (1 + ALLOCATOR_SLACK) + overhead, 2),
        in_flight=in_flight,
        recompute=recompute.granularity,
    )


def _layer_params(shape: Shape, tp: int) -> float:
    """One transformer layer's parameters on a TP rank (the two norms are not sharded)."""
    q = shape.heads * shape.kv_channels
    kv = 2 * shape.groups * shape.kv_channels
    linear = shape.hidden * (q + kv) + q * shape.hidden + 3 * shape.hidden * shape.ffn
    return linear / tp + 2 * shape.hidden


def _layer_activations(plan: TrainPlan, shape: Shape, recompute: Recompute) -> float:
    """Bytes one layer keeps for backward, per token of a micro batch (bf16 tensors).

    Norms: input and output of both (8h), split over TP only with sequence parallel. Attention:
    Q, K, V and the output; TE's fused attention keeps K and V per query group, Megatron's local
    attention expands them to every head and also keeps the softmax probabilities (s values per
    head and token) unless selective recompute drops them. MLP: SwiGLU's input (2 x ffn) and
    output (ffn).
    """
    tp, h = plan.tp, shape.hidden
    q = shape.heads * shape.kv_channels
    kv = 2 * shape.groups * shape.kv_channels
    sp = _switch(plan, "model.sequence_parallel")
    norms = 8 * h / (tp if sp else 1)
    local = not plan.transformer_engine
    attention = (2 * q + 2 * (2 * q if local else kv) + 2 * q) / tp
    if local and recompute.granularity is None:
        attention += 2 * shape.heads / tp * plan.seq_length
    mlp = 6 * shape.ffn / tp
    return norms + attention + mlp


def _recomputed(
    recompute: Recompute, layers: int, full: float, layer_input: float
) -> tuple[float, float]:
    """(bytes a stage keeps per micro batch, bytes recomputation adds while it runs)."""
    if recompute.granularity != "full":
        return layers * full, 0.0
    n = max(1, min(recompute.layers, layers))
    if recompute.method == "block":  # the first n layers keep only their input
        return n * layer_input + (layers - n) * full, full
    return -(-layers // n) * layer_input, n * full  # uniform: one input per group of n


def _switch(plan: TrainPlan, key: str) -> bool:
    return bool(plan.switches.get(key, {}).get("value", False))


def _value(overrides: list[Override], key: str, default: object) -> object:
    for o in overrides:
        if o.key == key:
            return parse_value(o.value)
    return default


@dataclass(frozen=True)
class Capacity:
    """Memory of one GPU and where the figure came from (the dry run says which)."""

    gib: float
    source: str


def gpu_capacity(gib: float | None) -> Capacity:
    """--gpu-memory when given, else the smallest GPU visible here, else DEFAULT_GPU_GIB."""
    if gib is not None:
        return Capacity(gib, "--gpu-memory")
    local = local_gpu()
    if local is not None:
        return Capacity(*local)
    return Capacity(DEFAULT_GPU_GIB, "--gpu-memory default; no GPU visible here")


def local_gpu() -> tuple[float, str] | None:
    """(GiB, name) of the smallest GPU this process sees, or None without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        return None
    props = min(
        (torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())),
        key=lambda p: p.total_memory,
    )
    return round(props.total_memory / GIB, 1), f"{props.name}, the smallest GPU visible here"
