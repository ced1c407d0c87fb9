"""`pipe sweep`: every variant of a sweep file as the run `pipe train` would make, one after
another through the cache, and the sweep's own record.

Each variant is planned by training.plan.build_plan and run by pipeline/train.py's `run`, so it
is an ordinary run artifact: a published one is reused, an unfinished one resumes from its work
folder. What the sweep adds: plans checked before any data work, the layout in each run's key
(a sweep measures layouts), failures recorded with their reason instead of stopping the rest,
and `<cache>/sweeps/<name>.json`, rewritten (atomically) after every variant.

A recorded launch failure (out of memory, a crash) is kept on a rerun without launching again,
since rerunning an OOM wastes GPU time; `--retry-failed` launches it again. A variant refused
at planning (a layout that does not divide, nvfp4 before Blackwell) is planned afresh each time.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from pipeline.artifact import Artifact
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.plan import Options, Step
from pipeline.run import ensure
from pipeline.sweep_file import BASE, Sweep, SweepFileError, Variant, describe
from pipeline.sweep_record import (
    DONE,
    FAILED,
    REUSED,
    entry,
    failure_reason,
    previous_entries,
    write_record,
)
from pipeline.train import MOCK, data_source, data_step, run, run_step
from stages import train
from training.layout import LayoutError
from training.options import resolve_nproc
from training.overrides import OverrideError
from training.plan import (
    DataSource,
    PlanError,
    Rendezvous,
    TrainPlan,
    build_plan,
    resume_iteration,
)
from training.tokenizer_check import check_tokenizer
from util.errors import PipeError

_PLAN_ERRORS = (PlanError, LayoutError, OverrideError)


@dataclass(frozen=True)
class Planned:
    """A variant bound to its run step, or the reason it cannot run here."""

    variant: Variant
    step: Step | None
    refused: str | None


def _plan(variant: Variant, data: DataSource, mock: bool) -> TrainPlan:
    launch = variant.launch
    return build_plan(
        model=launch.model,
        data=data,
        nproc_per_node=resolve_nproc(launch.nproc_per_node),
        tp=launch.tp,
        pp=launch.pp,
        precision=launch.precision,
        overrides=launch.overrides,
        mock=mock,
        rendezvous=Rendezvous(),
    )


# Override keys whose value the plan holds in a field of its own: spelling one out with the
# value the plan would take anyway changes nothing.
_PLANNED_KEYS = (
    "train.micro_batch_size",
    "train.global_batch_size",
    "train.train_iters",
    "model.seq_length",
    "dataset.seq_length",
)


def _effective(plan: TrainPlan) -> str:
    """The plan as what it runs: overrides the plan's own fields already hold left out."""
    body = plan.as_dict()
    body["overrides"] = sorted(
        o for o in plan.overrides if o.partition("=")[0].lstrip("+") not in _PLANNED_KEYS
    )
    return json.dumps(body, sort_keys=True)


def check_distinct(sweep: Sweep) -> None:
    """Before any data work: two variants that plan alike (one repeating the base's default,
    say micro batch 8 where 8 is what the base gets) are a sweep-file mistake."""
    seen: dict[str, str] = {}
    for v in sweep.variants:
        try:
            plan = _plan(v, MOCK, mock=True)
        except _PLAN_ERRORS:
            continue  # recorded as failed when the sweep runs
        body = _effective(plan)
        if body in seen:
            raise SweepFileError(
                f"{sweep.path}: variant {v.name!r} plans exactly as {seen[body]!r}; "
                f"it changes nothing"
            )
        seen[body] = v.name


def resolve_data(
    sweep: Sweep, blend: Path | None, cache: Cache, ctx: Context
) -> tuple[DataSource, Artifact | None, str]:
    """The data every variant trains on, made once (as `pipe train` makes it)."""
    if sweep.mock:
        if blend is not None:
            raise PipeError(f"{sweep.path} trains on synthetic data (mock); drop --blend")
        return MOCK, None, "mock"
    if blend is None:
        raise PipeError(f"{sweep.path}: pass --blend FILE (or set base.blend in the sweep file)")
    parent = ensure(data_step(blend, cache, Options()), cache, ctx, force=set()).artifact
    assert parent is not None
    data, name = data_source(parent)
    check_tokenizer(data.tokenizer, data.vocab_size, data.eod_id)
    return data, parent, name


def plan_variants(
    variants: list[Variant], data: DataSource, parent: Artifact | None, name: str, mock: bool
) -> list[Planned]:
    out = []
    for v in variants:
        try:
            plan = _plan(v, data, mock)
        except _PLAN_ERRORS as e:
            out.append(Planned(v, None, str(e)))
            continue
        out.append(
            Planned(v, run_step(plan, parent, f"{plan.model}-{name}", per_layout=True), None)
        )
    return out


def _kept_failure(p: Planned, previous: dict[str, dict], cache: Cache) -> dict | None:
    """The recorded launch failure of this very run, if it is not published since."""
    prev = previous.get(p.variant.name)
    if not prev or prev.get("status") != FAILED or p.step is None:
        return None
    if prev.get("run_key") != p.step.key or cache.usable(train.NAME, p.step.key):
        return None
    return prev


def action(p: Planned, cache: Cache, previous: dict[str, dict], retry_failed: bool) -> str:
    """What running the sweep would do with this variant (for --dry-run)."""
    if p.step is None:
        return "refused"
    if cache.usable(train.NAME, p.step.key):
        return "reuse"
    if not retry_failed and _kept_failure(p, previous, cache):
        return "keep failure (--retry-failed runs it)"
    it = resume_iteration(cache.root / ".work" / p.step.key)
    return f"resume from iteration {it}" if it else "run"


def preview(
    planned: list[Planned], cache: Cache, previous: dict[str, dict], retry_failed: bool
) -> list[dict[str, Any]]:
    """--dry-run: each variant, its run key and what running the sweep would do with it."""
    return [
        {
            "name": p.variant.name,
            "variable": p.variant.variable,
            "value": p.variant.value,
            "run_key": p.step.key if p.step else None,
            "action": action(p, cache, previous, retry_failed),
            "reason": p.refused,
            "args": p.variant.launch.args(),
        }
        for p in planned
    ]


def run_variant(p: Planned, cache: Cache, ctx: Context, interrupted: Callable[[], bool]) -> dict:
    """Run (or reuse) one variant; a failure becomes its record entry, not an exception."""
    if p.step is None:
        return entry(p.variant, None, FAILED, p.refused, None)
    work = cache.root / ".work" / p.step.key
    try:
        outcome = run(p.step, cache, ctx, fresh=False)
    except PipeError as e:
        if interrupted():
            raise KeyboardInterrupt from None  # Ctrl-C: no failure; a rerun resumes it
        reason = failure_reason(str(e), work)
        return entry(p.variant, p.step.key, FAILED, reason, work if work.exists() else None)
    if outcome.artifact is None:
        done, want = outcome.stats.get("iterations", 0), p.step.runtime["plan"]["train_iters"]
        reason = f"stopped at iteration {done} of {want}; --retry-failed resumes it"
        return entry(p.variant, p.step.key, FAILED, reason, outcome.path)
    status = REUSED if outcome.reused else DONE
    return entry(p.variant, p.step.key, status, None, outcome.path)


@contextmanager
def noticing_interrupts() -> Iterator[Callable[[], bool]]:
    """Tell a Ctrl-C from a failed launch: the launcher stops torchrun on KeyboardInterrupt and
    returns its exit code, which alone reads like any other failure."""
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, old)


def execute(
    sweep: Sweep,
    planned: list[Planned],
    blend: Path | None,
    cache: Cache,
    ctx: Context,
    retry_failed: bool,
) -> dict[str, Any]:
    """Run the planned variants in order; the record is rewritten after each one."""
    previous = previous_entries(cache, sweep.name)
    entries = {n: e for n, e in previous.items() if n in {v.name for v in sweep.variants}}
    record = write_record(cache, sweep, blend, entries)
    with noticing_interrupts() as interrupted:
        for p in planned:
            kept = None if retry_failed else _kept_failure(p, previous, cache)
            if kept:
                why = escape(kept["reason"] or "")
                ctx.say(f"sweep {sweep.name}: {p.variant.name} failed before ({why}); kept")
                continue
            what = "" if p.variant.name == BASE else f": {describe(p.variant)}"
            ctx.say(escape(f"sweep {sweep.name}: {p.variant.name}{what}"))
            entries[p.variant.name] = run_variant(p, cache, ctx, interrupted)
            record = write_record(cache, sweep, blend, entries)
    return record
