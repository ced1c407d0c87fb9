"""Walk the steps a command needs: reuse what the cache holds, build the rest, parents first.

Every artifact goes through `Cache.ensure` (the one cache path); the stage module named by the
step builds it. A step's parents are ensured only when the step itself must be built, so a full
cache hit touches nothing but manifests.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from pipeline.artifact import Artifact, Outcome
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.plan import Step

# The stages, by the name their artifacts carry. Imported when first run: curate and train
# pull in NeMo Curator and Megatron-Bridge, which a command that does not need them never pays.
STAGES = {
    "download": "stages.download",
    "curate": "stages.curate",
    "tokenize": "stages.tokenize",
    "megatron_blend": "stages.megatron_blend",
    "train": "stages.train",
}


def stage_module(name: str) -> ModuleType:
    return importlib.import_module(STAGES[name])


def ensure(step: Step | Artifact, cache: Cache, ctx: Context, force: set[str]) -> Outcome:
    """Reuse or build `step` (its parents first, when it must be built)."""
    if isinstance(step, Artifact):
        return Outcome(step.stage, step.key, step.path, step.manifest["stats"], True, step)
    module = stage_module(step.stage)

    parents: list[Artifact] = []

    def ensure_parents() -> None:
        if hasattr(module, "warm_up"):  # e.g. slow imports, done while the parents build
            config = step.request.config | step.runtime
            ctx.warm_up(lambda: module.warm_up(config, ctx))
        parents.extend(_artifact(ensure(p, cache, ctx, force)) for p in step.parents)

    def build(work: Path) -> dict:
        return module.build(parents, step.request.config | step.runtime, work, ctx)

    stale = getattr(module, "LINKS_PARENTS", False) and not _links_hold(step, cache, ctx)
    outcome = cache.ensure(
        step.request,
        build,
        force=step.stage in force or stale,
        resumable=module.RESUMABLE,
        say=ctx.say,
        before=ensure_parents,
    )
    return ctx.outcomes.setdefault(step.key, outcome)


def _links_hold(step: Step, cache: Cache, ctx: Context) -> bool:
    """For a stage whose output names its parents' files (blend.json lists tokenize prefixes):
    reusable only while those parents are whole and where it says (not in a moved cache)."""
    art = cache.get(step.stage, step.key)
    if art is None:
        return True
    here = [str(cache.path_of(p.stage, p.key)) for p in step.parents]
    if art.manifest["stats"].get("links") != here:
        return False
    return all(cache.usable(p.stage, p.key, ctx.say) for p in step.parents)


def _artifact(outcome: Outcome) -> Artifact:
    assert outcome.artifact is not None, f"{outcome.stage} {outcome.key} did not finish"
    return outcome.artifact


def summarise(ctx: Context, stage: str, outcomes: list[Outcome]) -> None:
    """One table of the stage's rows (as its module shapes them) for these outcomes."""
    module = stage_module(stage)
    for o in outcomes:
        name = o.artifact.manifest["name"] if o.artifact else o.key
        for row in module.rows(name, o.stats, "reused" if o.reused else "built"):
            ctx.display.add_row(*row)
    ctx.display.summary(stage, module.COLUMNS)
