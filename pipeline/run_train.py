"""The train end of `pipe run`: the same plan, run step and launch as `pipe train`
(pipeline/train.py, training/plan.py), fed by the megatron blend `pipe run` ensured.

Imports training/ only when called, so `pipe run --until tokenize` never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.artifact import Artifact, Outcome
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.plan import Step
from stages import megatron_blend


@dataclass(frozen=True)
class TrainArgs:
    """`pipe train`'s launch options, as `pipe run` takes them."""

    model: str = "1b"
    nproc_per_node: str = "auto"
    tp: int | None = None
    pp: int = 1
    precision: str = "bf16"
    overrides: tuple[str, ...] = ()

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
    launch: dict[str, Any], blend: Step, facts: dict[str, Any], cache: Cache
) -> tuple[Step, Any]:
    """The run step and its placed plan for a megatron blend not built yet (--dry-run): the
    data side as it will be once built (its folder in the cache, the tokenizer's facts), so
    the run key is the one a real run gets."""
    from pipeline.train import run_step, where_it_runs
    from training.plan import DataSource, build_plan

    folder = cache.path_of(megatron_blend.NAME, blend.key)
    data = DataSource(
        blend_json=str(folder / megatron_blend.BLEND_JSON),
        tokenizer=facts["path"],
        vocab_size=int(facts["vocab_size"]),
        eod_id=int(facts["eod_id"]),
        artifact=blend.key,
    )
    plan = build_plan(data=data, **launch)
    parent = Artifact(blend.key, megatron_blend.NAME, folder, {})
    step = run_step(plan, parent, f"{plan.model}-{blend.name}")
    return step, where_it_runs(step, cache, fresh=False)


def train_on(launch: dict[str, Any], blend: Artifact, cache: Cache, ctx: Context) -> Outcome:
    """Train on a published megatron blend, exactly as `pipe train --blend` does."""
    from pipeline.train import data_source, run, run_step
    from training.plan import build_plan
    from training.tokenizer_check import check_tokenizer

    data, name = data_source(blend)
    check_tokenizer(data.tokenizer, data.vocab_size, data.eod_id)
    plan = build_plan(data=data, **launch)
    return run(run_step(plan, blend, f"{plan.model}-{name}"), cache, ctx, fresh=False)
