"""Command-line values the plan resolves first: --precision and --nproc-per-node.

Nothing here imports Megatron-Bridge; torch only for `--nproc-per-node auto`.
"""

from __future__ import annotations

# --precision -> Megatron-Bridge mixed-precision recipe (training/mixed_precision.py there).
# `fp8` keeps its first meaning (current scaling); `fp8-current` says it outright.
PRECISION_RECIPES = {
    "bf16": "bf16_mixed",
    "fp8": "bf16_with_fp8_current_scaling_mixed",
    "fp8-current": "bf16_with_fp8_current_scaling_mixed",
    "fp8-delayed": "bf16_with_fp8_delayed_scaling_mixed",
    "nvfp4": "bf16_with_nvfp4_mixed",
}
# NVFP4 GEMMs exist from Blackwell (compute capability 10.0) on; Hopper would fail in TE.
NVFP4_MIN_CAPABILITY = (10, 0)


class PlanError(ValueError):
    """A plan that cannot run: say why before anything starts."""


def gpu_count() -> int:
    """GPUs this process can see (0 on a machine without CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def gpu_capability() -> tuple[int, int] | None:
    """The lowest CUDA compute capability among the visible GPUs; None without a GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return min(torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        return None


def check_precision(precision: str, has_te: bool, capability: tuple[int, int] | None = None) -> str:
    """The Bridge mixed-precision recipe for --precision; fp8/nvfp4 need Transformer Engine,
    and nvfp4 a Blackwell GPU. `capability` is probed when not given (tests pass one); a
    machine without a GPU plans for another and is not refused."""
    if precision not in PRECISION_RECIPES:
        raise PlanError(f"unknown precision {precision!r}; choose one of {list(PRECISION_RECIPES)}")
    if precision != "bf16" and not has_te:
        raise PlanError(
            f"--precision {precision} needs Transformer Engine (its fp8/nvfp4 recipes and layer "
            f"spec), which is not installed here; use --precision bf16, or install "
            f"transformer-engine[pytorch] matching this torch and CUDA"
        )
    if precision == "nvfp4":
        found = capability or gpu_capability()
        if found is not None and tuple(found) < NVFP4_MIN_CAPABILITY:
            raise PlanError(
                f"--precision nvfp4 needs a Blackwell GPU (compute capability >= 10.0); this one "
                f"is {found[0]}.{found[1]}: use --precision fp8-current or fp8-delayed"
            )
    return PRECISION_RECIPES[precision]


def resolve_nproc(value: str | int, gpus: int | None = None) -> int:
    """--nproc-per-node: a positive number, or `auto` = the GPUs this machine has."""
    if isinstance(value, int) or str(value).isdigit():
        n = int(value)
        if n < 1:
            raise PlanError("--nproc-per-node must be at least 1")
        return n
    if value != "auto":
        raise PlanError(f"--nproc-per-node must be a number or 'auto', got {value!r}")
    n = gpu_count() if gpus is None else gpus
    if n < 1:
        raise PlanError(
            "--nproc-per-node auto: no GPU is visible here; pass a number to plan "
            "for another machine (e.g. --nproc-per-node 8 --dry-run)"
        )
    return n
