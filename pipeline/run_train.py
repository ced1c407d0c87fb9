"""The train end of `pipe run`: the same plan, checks, run step and launch as `pipe train`
(pipeline/train.py, pipeline/train_preflight.py, training/plan.py), fed by the megatron blend
`pipe run` ensured.

Imports training/ only when called, so `pipe run --until tokenize` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pipeline.cache import Cache
from pipeline.plan import Step

if TYPE_CHECKING:
    from pipeline.train_preflight import Preflight, SplitEstimate


def memory_check_options(fn: Callable) -> Callable:
    """--gpu-memory and --no-memory-check, of `pipe train` and `pipe run --until train` alike."""
    fn = click.option(
        "--no-memory-check",
        is_flag=True,
        help="Launch even when the memory estimate exceeds the GPUs' (the estimate is +-25%).",
    )(fn)
    return click.option(
        "--gpu-memory",
        type=click.FloatRange(min=1),
        default=None,
        metavar="GIB",
        help="Memory of one GPU for the memory check [default: the smallest GPU visible here, "
        "else 80].",
    )(fn)


@dataclass(frozen=True)
class TrainArgs:
    """`pipe train`'s launch options, as `pipe run` takes them."""

    model: str = "1b"
    nproc_per_node: str = "auto"
    tp: int | None = None
    pp: int = 1
    precision: str = "bf16"
    overrides: tuple[str, ...] = ()
    gpu_memory: float | None = None
    no_memory_check: bool = False

    def launch(self) -> dict[str, Any]:
        """build_plan's launch arguments, checked before any data work (as `pipe train`):
        a misspelled override or an impossible layout fails in well under a second."""
        from pipeline.train import MOCK
        from training.overrides import parse_overrides
        from training.plan import build_plan, resolve_nproc

        parse_overrides(self.overrides)
        launch = {
            "model": self.model,
            "nproc_per_node": resolve_nproc(self.nproc_per_node),
            "tp": self.tp,
            "pp": self.pp,
            "precision": self.precision,
            "overrides": self.overrides,
        }
        build_plan(data=MOCK, mock=True, **launch)
        return launch


def train_errors() -> tuple[type[Exception], ...]:
    """The training side's user errors, for the CLI's one-line error handling."""
    from training.layout import LayoutError
    from training.overrides import OverrideError
    from training.plan import PlanError
    from training.tokenizer_check import TokenizerMismatch

    return PlanError, LayoutError, OverrideError, TokenizerMismatch


def planned_run(
    train: TrainArgs,
    blend: Step,
    cache: Cache,
    estimate: SplitEstimate | None = None,
    refuse: bool = False,
) -> tuple[Step, Any, Preflight]:
    """The run step, its placed plan and its preflight (pipe train's), the data as it will be
    once built, so the run key is the one a real run gets; the token budget on the built
    blend's counts, else on `estimate`. `refuse`: a plan that cannot fit raises (the real run's
    check before any data is built)."""
    from pipeline.train import planned_data, run_step, where_it_runs
    from pipeline.train_preflight import budget_for, check_launch
    from training.plan import build_plan

    launch = train.launch()
    data, name, built = planned_data(blend, cache)
    plan = build_plan(data=data, **launch)
    budget = budget_for(plan, built, estimate)
    checks = check_launch(plan, launch, data, budget, train.gpu_memory, refuse)
    step = run_step(plan, built or blend, f"{plan.model}-{name}")
    return step, where_it_runs(step, cache, fresh=False), checks
