"""What `pipe train` and `pipe run --until train` check and state before launch: GPU memory per
rank and the token budget.

`--dry-run` prints both; a real run refuses a plan whose memory estimate exceeds the GPUs'
(unless `--no-memory-check`), naming single changes that would fit, before any data is built.
Before a blend is tokenized, its split sizes are estimated from a sample of its source (the
estimator of `pipe run --dry-run`), so the epochs are known before any tokenizing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.artifact import Artifact
from pipeline.cache import Cache
from pipeline.plan import Planner
from training.budget import TokenBudget, split_tokens, token_budget
from training.memory import TOLERANCE, Capacity, MemoryEstimate, estimate_memory, gpu_capacity
from training.plan import DataSource, TrainPlan, build_plan
from training.switches import Installed
from util.errors import PipeError

FULL_RECOMPUTE = (
    "model.recompute_granularity=full",
    "model.recompute_method=uniform",
    "model.recompute_num_layers=1",
)


@dataclass(frozen=True)
class Preflight:
    """The memory verdict and the token budget of one plan."""

    memory: MemoryEstimate
    capacity: Capacity
    budget: TokenBudget
    fixes: list[str] = field(default_factory=list)  # single changes that would fit

    @property
    def fits(self) -> bool:
        return self.memory.needed_gib <= self.capacity.gib

    def memory_warning(self) -> str | None:
        if self.fits:
            return None
        fixes = "; ".join(self.fixes) or "more GPUs (--nproc-per-node, --nnodes) or a smaller model"
        m = self.memory
        return (
            f"the plan needs ~{m.needed_gib:.0f} GiB per GPU (peak ~{m.peak_gib:.0f} GiB "
            f"allocated: weights, gradients and optimizer {m.weights_gib:.0f}, activations "
            f"{m.activations_gib:.0f}; estimate +-{TOLERANCE:.0%}) but a GPU has "
            f"{self.capacity.gib:g} GiB ({self.capacity.source}); would fit: {fixes}"
        )

    def warnings(self) -> list[str]:
        memory = self.memory_warning()
        return ([memory] if memory else []) + self.budget.warnings()

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory.as_dict()
            | {
                "capacity_gib": self.capacity.gib,
                "capacity_source": self.capacity.source,
                "fits": self.fits,
                "tolerance": TOLERANCE,
                "fixes": self.fixes,
            },
            "token_budget": self.budget.as_dict(),
            "warnings": self.warnings(),
        }

    def rows(self) -> dict[str, str]:
        """The dry run's lines (after the plan's)."""
        b, m = self.budget, self.memory
        iterations = b.train_consumed // b.tokens_per_iteration
        reads = (
            f"reads {b.train_consumed:,} train tokens ({iterations:,} iterations x "
            f"{b.tokens_per_iteration:,})"
        )
        about = "~" if b.estimated else ""
        if b.epochs is None:
            tokens = f"{reads}; split sizes unknown: {b.unknown}"
        else:
            tokens = (
                f"{reads} = {about}{b.epochs:.2f} epochs of the {about}{b.train_tokens:,} in the "
                f"train split (one epoch: {about}{b.iterations_per_epoch:,} iterations)"
                + (f"; {b.estimated}" if b.estimated else "")
            )
        valid = f"{b.evaluations} evaluation(s) read {b.valid_consumed:,} tokens"
        if b.valid_tokens is not None:
            valid += f" of a {about}{b.valid_tokens:,}-token valid split"
        return {
            "tokens": tokens,
            "valid": valid,
            "memory": (
                f"~{m.peak_gib:.1f} GiB allocated per GPU at the peak (+-{TOLERANCE:.0%}; stage "
                f"{m.stage}: weights+grads+optimizer {m.weights_gib:.1f}, activations "
                f"{m.activations_gib:.1f}, {m.in_flight} micro batch(es) in flight)"
            ),
            "gpu": (
                f"needs ~{m.needed_gib:.1f} GiB with allocator slack and CUDA context, of "
                f"{self.capacity.gib:g} GiB ({self.capacity.source}): "
                + ("fits" if self.fits else "does NOT fit")
            ),
        }


@dataclass(frozen=True)
class SplitEstimate:
    """Split sizes of a blend not tokenized yet, estimated from a sample of its source."""

    splits: dict[str, dict[str, dict]]  # {split: {dataset: {tokens, weight}}}
    sample_docs: int

    @property
    def how(self) -> str:
        return f"estimated from a sample of {self.sample_docs:,} docs; not tokenized yet"


def estimated_splits(planner: Planner, datasets: list[dict[str, Any]]) -> SplitEstimate | None:
    """Split sizes from a dry-run plan's datasets (pipeline/dry_run.py: tokens per dataset from
    a sample), cut by the blend's split fractions: documents go to a split by a hash of their
    id, so tokens do in about those shares. None when a dataset has no token estimate."""
    if not datasets or any("tokens" not in (d.get("estimate") or {}) for d in datasets):
        return None
    blend = planner.blend
    weights = {ds.name: ds.weight for ds in blend.datasets}
    shares = {"train": 1.0 - blend.valid - blend.test, "valid": blend.valid, "test": blend.test}
    tokens = {d["name"]: d["estimate"]["tokens"] for d in datasets}
    splits = {
        split: {n: {"tokens": round(t * share), "weight": weights[n]} for n, t in tokens.items()}
        for split, share in shares.items()
    }
    return SplitEstimate(splits, sum(d["estimate"]["sample"]["docs"] for d in datasets))


def sample_estimate(planner: Planner, cache: Cache) -> SplitEstimate | None:
    """The blend's split sizes from `pipe run --dry-run`'s estimator; builds nothing."""
    from pipeline.dry_run import make_plan

    return estimated_splits(planner, make_plan(planner, cache, "tokenize")["datasets"])


def budget_for(
    plan: TrainPlan, built: Artifact | None, estimate: SplitEstimate | None = None
) -> TokenBudget:
    """The token budget on the cached blend's counts; else on `estimate`; else unknown (and
    why)."""
    if plan.mock:
        return token_budget(plan, None, "synthetic data (--mock) has no split to exhaust")
    if built is None and estimate is not None:
        return token_budget(plan, estimate.splits, estimated=estimate.how)
    if built is None:
        return token_budget(
            plan, None, "the blend is not tokenized yet (pipe tokenize --blend FILE, or a run)"
        )
    splits = split_tokens(built.manifest)
    return token_budget(plan, splits, None if splits else "the blend's manifest has no counts")


def preflight(
    plan: TrainPlan,
    capacity: Capacity,
    budget: TokenBudget,
    launch: dict[str, Any],
    data: DataSource,
) -> Preflight:
    """Estimate `plan`; when it does not fit, try the usual single changes and keep those
    that would (each re-planned by build_plan, so only layouts Megatron accepts are named)."""
    memory = estimate_memory(plan)
    found = Preflight(memory, capacity, budget)
    if found.fits:
        return found
    return Preflight(memory, capacity, budget, _fixes(plan, capacity, launch, data))


def check_launch(
    plan: TrainPlan,
    launch: dict[str, Any],
    data: DataSource,
    budget: TokenBudget,
    gpu_memory: float | None,
    refuse: bool,
) -> Preflight:
    """The one check before a launch, of `pipe train` and `pipe run --until train` alike: the
    preflight on the GPUs' memory (`gpu_memory` GiB, else the smallest visible GPU); with
    `refuse` (a real run without --no-memory-check) a plan that cannot fit is refused here,
    before any data is built."""
    checks = preflight(plan, gpu_capacity(gpu_memory), budget, launch, data)
    if refuse and not checks.fits:
        raise PipeError(f"{checks.memory_warning()}; or pass --no-memory-check")
    return checks


def _fixes(
    plan: TrainPlan, capacity: Capacity, launch: dict[str, Any], data: DataSource
) -> list[str]:
    overrides = list(launch["overrides"])
    tries: list[tuple[str, dict[str, Any]]] = [
        (f"--tp {plan.tp * 2}", {"tp": plan.tp * 2}),
        (f"--pp {plan.pp * 2}", {"pp": plan.pp * 2}),
    ]
    if not any(o.startswith("model.recompute_") for o in overrides):
        tries.append((" ".join(FULL_RECOMPUTE), {"overrides": [*overrides, *FULL_RECOMPUTE]}))
    installed = Installed(**plan.installed)

    def needs(change: dict[str, Any]) -> float | None:
        try:
            other = build_plan(data=data, mock=plan.mock, installed=installed, **(launch | change))
        except ValueError:  # LayoutError, PlanError, OverrideError: not a layout to suggest
            return None
        return estimate_memory(other).needed_gib

    out = []
    per_rank = plan.global_batch_size // plan.dp
    others = [o for o in overrides if not o.startswith("train.micro_batch_size=")]
    for mbs in range(plan.micro_batch_size - 1, 0, -1):  # the largest micro batch that fits
        label = f"train.micro_batch_size={mbs}"
        needed = needs({"overrides": [*others, label]}) if per_rank % mbs == 0 else None
        if needed is not None and needed <= capacity.gib:
            out.append(f"{label} (~{needed:.0f} GiB)")
            break
    for label, change in tries:
        needed = needs(change)
        if needed is not None and needed <= capacity.gib:
            out.append(f"{label} (~{needed:.0f} GiB)")
    return out
