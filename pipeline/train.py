"""Plan and run `pipe train`: the data artifact it trains on, the launch plan, the run step.

The data side goes through the same planner and cache as `pipe tokenize` (the blend file's
megatron blend, made if missing); the run itself is the train stage's artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.artifact import MANIFEST, Artifact, Outcome, Request
from pipeline.blend_file import load_blend
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.fingerprint import HashMemo, tokenizer_folder
from pipeline.plan import Options, Planner, Step
from pipeline.run import ensure
from pipeline.train_preflight import budget_for
from stages import megatron_blend, train
from stages.encoder import tokenizer_facts
from training.data import check_blend_json
from training.plan import DataSource, TrainPlan, build_plan, place
from training.tokenizer_check import check_tokenizer
from util.errors import PipeError

MOCK_VOCAB = 131072
MOCK = DataSource(
    blend_json=None, tokenizer="NullTokenizer", vocab_size=MOCK_VOCAB, eod_id=MOCK_VOCAB - 1
)


def published_blend(blend_json: Path) -> Artifact | None:
    """The published megatron blend a blend.json belongs to, if it is one."""
    manifest_path = blend_json.parent / MANIFEST
    if blend_json.name != megatron_blend.BLEND_JSON or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("stage") != megatron_blend.NAME:
        return None
    return Artifact(manifest["key"], megatron_blend.NAME, blend_json.parent.resolve(), manifest)


def data_step(blend_path: Path, cache: Cache, opts: Options) -> Step | Artifact:
    """What `--blend` names: a published blend.json as it is, or a blend file's plan."""
    art = published_blend(blend_path)
    if art is not None:
        if opts.tokenizer or opts.limit:
            raise PipeError(
                f"{blend_path} is already tokenized; --tokenizer/--limit apply to blend files only"
            )
        return art
    return blend_planner(blend_path, cache, opts).megatron_blend()[0]


def blend_planner(blend_path: Path, cache: Cache, opts: Options) -> Planner:
    return Planner(load_blend(blend_path), opts, HashMemo(cache.root / ".hashes.json"))


def data_source(art: Artifact) -> tuple[DataSource, str]:
    """The training side's view of a megatron blend, and its name."""
    blend_json = art.path / megatron_blend.BLEND_JSON
    check_blend_json(blend_json)
    tok = art.manifest["stats"]["tokenizer"]
    source = DataSource(
        blend_json=str(blend_json),
        tokenizer=tok["path"],
        vocab_size=int(tok["vocab_size"]),
        eod_id=int(tok["eod_id"]),
        artifact=art.key,
    )
    return source, str(art.manifest.get("name") or art.key)


def planned_data(wanted: Step | Artifact, cache: Cache) -> tuple[DataSource, str, Artifact | None]:
    """The data a run will train on, building nothing (for --dry-run and the memory check).

    The cached megatron blend when it is there; else what its step will make: the tokenizer's
    own vocabulary and EOD, and the artifact key and blend.json path the build will give.
    """
    art = wanted if isinstance(wanted, Artifact) else cache.usable(wanted.stage, wanted.key)
    if art is not None:
        return (*data_source(art), art)
    where = wanted.parents[0].runtime["tokenizer"]
    facts = tokenizer_facts(str(tokenizer_folder(where)))  # a hub id: its snapshot's files
    source = DataSource(
        blend_json=str(cache.path_of(wanted.stage, wanted.key) / megatron_blend.BLEND_JSON),
        tokenizer=where,
        vocab_size=facts["vocab_size"],
        eod_id=facts["eod_id"],
        artifact=wanted.key,
    )
    return source, wanted.name, None


def run_step(
    plan: TrainPlan, data: Step | Artifact | None, name: str, per_layout: bool = False
) -> Step:
    """The run as a cached step. `per_layout` adds the layout to the key: `pipe sweep` measures
    layouts, so its TP=2 variant must be a run of its own, not the TP=1 base resumed (which is
    what `pipe train` wants: the same weights, resharded)."""
    parents = (data,) if data else ()
    config = plan.identity()
    if per_layout:
        config["layout"] = {
            k: getattr(plan, k) for k in ("nnodes", "nproc_per_node", "tp", "pp", "dp")
        } | {"micro_batch_size": plan.micro_batch_size}
    request = Request(train.NAME, train.VERSION, name, config, tuple(p.key for p in parents))
    return Step(request, parents, {"plan": plan.as_dict(), "run_key": request.key})


def where_it_runs(step: Step, cache: Cache, fresh: bool) -> TrainPlan:
    """The plan bound to the run's folder (published, or in the work area), for --dry-run."""
    done = cache.get(train.NAME, step.key)
    folder = done.path if done and not fresh else cache.root / ".work" / step.key
    return place(TrainPlan(**step.runtime["plan"]), folder, step.key)


def run(step: Step, cache: Cache, ctx: Context, fresh: bool) -> Outcome:
    plan = TrainPlan(**step.runtime["plan"])
    if plan.nnodes > 1 and plan.rendezvous["node_rank"] != 0:
        work = cache.root / ".work" / step.key
        train.follow(step.runtime["plan"], work, step.key)
        return Outcome(train.NAME, step.key, work, {}, False, None)
    return ensure(step, cache, ctx, force={train.NAME} if fresh else set())


def train_on(
    launch: dict, blend: Artifact | None, cache: Cache, ctx: Context, fresh: bool = False
) -> tuple[TrainPlan, Outcome]:
    """Train on a published megatron blend (None: synthetic data), as `pipe train` and `pipe
    run --until train` both do: the tokenizer checked against the data, the token budget's
    warnings said on the real counts, then the run."""
    data, name = data_source(blend) if blend else (MOCK, "mock")
    if blend is not None:
        check_tokenizer(data.tokenizer, data.vocab_size, data.eod_id)
    plan = build_plan(data=data, mock=blend is None, **launch)
    for warning in budget_for(plan, blend).warnings():
        ctx.say(f"warning: {warning}")
    return plan, run(run_step(plan, blend, f"{plan.model}-{name}"), cache, ctx, fresh)
