"""Train stage: a megatron blend (or synthetic data) -> a Megatron-Bridge run launched by torchrun.

Config (what keys it): the plan's identity (model, precision, batch, iterations, overrides:
what decides the trained weights, not where or how wide); parent: the megatron blend artifact.
The run lives in the work folder while it trains, so an interrupted run resumes from its last
checkpoint; it is published once it reaches `train_iters`. Everything about training itself is
in training/ (plan, launch, record), which imports nothing from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stages.base import Context
from training.launch import launch
from training.plan import TrainPlan, place, write_plan
from training.record import assemble
from util.errors import PipeError

NAME = "train"
VERSION = 1
RESUMABLE = True
COLUMNS = ("run", "iterations", "loss", "s/iteration", "tokens/s", "TFLOP/s/GPU", "peak GiB")


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    plan = place(TrainPlan(**config["plan"]), work, config["run_key"])
    write_plan(plan)
    if plan.resume_iteration:
        ctx.say(f"train {config['run_key']}: resuming from iteration {plan.resume_iteration}")
    code, log = launch(plan)
    summary = assemble(work, plan.as_dict())["summary"]
    if code:
        raise PipeError(
            f"training exited with code {code}; see {log}. The run keeps its checkpoints in "
            f"{work}: run the same command to resume"
        )
    if summary.get("iterations", 0) < plan.train_iters:
        return summary | {"unfinished": True}
    return summary


def follow(plan_dict: dict[str, Any], work: Path, run_key: str) -> None:
    """Another node of a multi-node run: launch its ranks in the shared work folder; node 0
    holds the lock, records and publishes."""
    plan = place(TrainPlan(**plan_dict), work, run_key)
    Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
    write_plan(plan)
    code, log = launch(plan)
    if code:
        raise PipeError(f"training exited with code {code}; see {log}")


def rows(name: str, s: dict[str, Any], status: str) -> Iterator[tuple]:
    yield (
        f"{name} ({status})",
        s.get("iterations", 0),
        f"{s.get('first_loss')} -> {s.get('last_loss')}",
        round(s.get("seconds_per_iteration", 0.0), 3),
        round(s.get("tokens_per_second", 0.0)),
        round(s.get("tflops_per_gpu", 0.0), 1),
        round(s.get("peak_memory_allocated_gib", 0.0), 1),
    )
