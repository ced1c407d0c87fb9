"""`pipe train`: parse, plan (data artifact, launch plan, run step), run, print.

Planning and running live in pipeline/train.py; training itself in training/.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.artifact import Outcome
from pipeline.cli_common import cache_dir_option, user_errors
from pipeline.run_train import memory_check_options
from pipeline.train_preflight import Preflight, budget_for, check_launch, sample_estimate
from training.data import BlendFileError
from training.layout import LayoutError
from training.overrides import OverrideError, parse_overrides
from training.plan import (
    PRECISION_RECIPES,
    PlanError,
    Rendezvous,
    TrainPlan,
    build_plan,
    resolve_nproc,
)
from training.presets import PRESETS
from training.switches import describe
from training.tokenizer_check import TokenizerMismatch, check_tokenizer
from util.errors import PipeError

_user_errors = user_errors(PlanError, LayoutError, OverrideError, TokenizerMismatch, BlendFileError)


def _print_plan(plan: TrainPlan, key: str) -> None:
    rows = {
        "run": key,
        "model": f"{plan.model} ({plan.num_params / 1e9:.2f}B params, seq {plan.seq_length})",
        "layout": f"{plan.nnodes} node(s) x {plan.nproc_per_node} GPU(s): TP={plan.tp} "
        f"PP={plan.pp} DP={plan.dp}",
        "batch": f"global {plan.global_batch_size} x micro {plan.micro_batch_size}, "
        f"{plan.tokens_per_iteration:,} tokens/iteration, {plan.train_iters} iterations",
        "precision": f"{plan.precision} ({plan.mixed_precision}, {plan.layer_spec} layers)",
        "switches": describe(plan.switches),
        "data": plan.blend_json or "mock (synthetic)",
        "tokenizer": f"{plan.tokenizer} (vocab {plan.vocab_size}, EOD {plan.eod_id})",
        "overrides": " ".join(plan.overrides) or "-",
        "run dir": plan.run_dir,
        "resume": f"from iteration {plan.resume_iteration}" if plan.resume_iteration else "no",
        "torchrun": " ".join(plan.torchrun),
    }
    for k, v in rows.items():
        click.echo(f"{k:>10}: {v}")


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--blend",
    "blend_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Blend file (blends/*.json), or a megatron blend's blend.json.",
)
@click.option(
    "--model",
    type=click.Choice(list(PRESETS)),
    default="1b",
    show_default=True,
    help="Model preset (dense Llama-style GPT).",
)
@click.option(
    "--nproc-per-node",
    default="auto",
    show_default=True,
    help="GPUs per node, or 'auto' for all visible ones.",
)
@click.option(
    "--tp",
    type=click.IntRange(min=1),
    default=None,
    help="Tensor parallel size [default: largest of 2, 1 that fits].",
)
@click.option(
    "--pp", type=click.IntRange(min=1), default=1, show_default=True, help="Pipeline parallel size."
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISION_RECIPES)),
    default="bf16",
    show_default=True,
    help="fp8 = fp8-current (current scaling); fp8-delayed: delayed scaling; fp8* and nvfp4 "
    "need Transformer Engine, nvfp4 also a Blackwell GPU.",
)
@click.option("--mock", is_flag=True, help="Train on synthetic data (no --blend).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan, its token budget and memory estimate; build and launch nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@click.option(
    "--nnodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Nodes (torchrun rendezvous; run pipe train on each).",
)
@click.option(
    "--node-rank",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="This node's rank; node 0 records and publishes the run.",
)
@click.option("--rdzv-endpoint", default=None, help="torchrun rendezvous HOST:PORT.")
@click.option("--rdzv-id", default=None, help="torchrun rendezvous id [default: run key].")
@click.option("--rdzv-backend", default="c10d", show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Documents per dataset when the blend must be tokenized (as pipe tokenize).",
)
@click.option(
    "--tokenizer",
    default=None,
    help="Tokenizer for tokenizing the blend (as pipe tokenize); the model uses it.",
)
@click.option("--fresh", is_flag=True, help="Discard an unfinished run's checkpoints first.")
@memory_check_options
@cache_dir_option
@click.option("--quiet", is_flag=True, help="No progress bars or tables.")
@click.argument("overrides", nargs=-1)
@_user_errors
def train(
    blend_path: Path | None,
    model: str,
    nproc_per_node: str,
    tp: int | None,
    pp: int,
    precision: str,
    mock: bool,
    dry_run: bool,
    as_json: bool,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    rdzv_id: str | None,
    rdzv_backend: str,
    limit: int | None,
    tokenizer: str | None,
    fresh: bool,
    gpu_memory: float | None,
    no_memory_check: bool,
    cache_dir: Path | None,
    quiet: bool,
    overrides: tuple[str, ...],
) -> None:
    """Pretrain a GPT on the blend's tokens with Megatron-Bridge, launched by torchrun.

    KEY=VALUE arguments are Megatron-Bridge dotlist overrides, e.g. train.train_iters=5000
    train.global_batch_size=64 checkpoint.save_interval=500.
    """
    parse_overrides(overrides)  # a misspelled key fails first, in well under a second
    if mock and blend_path:
        raise PipeError("--mock trains on synthetic data; drop --blend (or drop --mock)")
    if not mock and blend_path is None:
        raise PipeError("pass --blend FILE (or --mock to train on synthetic data)")
    rdzv = Rendezvous(
        nnodes=nnodes,
        node_rank=node_rank,
        endpoint=rdzv_endpoint,
        rdzv_id=rdzv_id,
        backend=rdzv_backend,
    )
    launch = dict(
        model=model,
        nproc_per_node=resolve_nproc(nproc_per_node),
        tp=tp,
        pp=pp,
        precision=precision,
        overrides=overrides,
        rendezvous=rdzv,
    )
    from pipeline.cache import Cache, default_root  # the data side's imports wait until here
    from pipeline.context import Context
    from pipeline.plan import Options
    from pipeline.progress import Display
    from pipeline.run import ensure
    from pipeline.train import (
        MOCK,
        blend_planner,
        data_step,
        planned_data,
        run_step,
        train_on,
        where_it_runs,
    )

    build_plan(data=MOCK, mock=True, **launch)  # layout, precision, overrides: before any data
    cache = Cache(cache_dir or default_root())
    # What the run will train on, building nothing: the dry run and the memory check need no
    # tokenized data (a cached blend gives its exact token counts, else a sample estimates them).
    data, name, built, wanted, estimate = MOCK, "mock", None, None, None
    if not mock:
        opts = Options(limit=limit, tokenizer=tokenizer)
        wanted = data_step(blend_path, cache, opts)
        data, name, built = planned_data(wanted, cache)
        if dry_run and built is None:
            estimate = sample_estimate(blend_planner(blend_path, cache, opts), cache)
    plan = build_plan(data=data, mock=mock, **launch)
    budget = budget_for(plan, built, estimate)
    refuse = not dry_run and not no_memory_check
    checks = check_launch(plan, launch, data, budget, gpu_memory, refuse)
    if dry_run:
        if not mock:
            check_tokenizer(data.tokenizer, data.vocab_size, data.eod_id)
        step = run_step(plan, built or wanted, f"{plan.model}-{name}")
        _print_dry_run(where_it_runs(step, cache, fresh), step.key, checks, as_json)
        return
    with Context(Display(quiet=quiet)) as ctx:
        parent = None if mock else ensure(wanted, cache, ctx, force=set()).artifact
        plan, outcome = train_on(launch, parent, cache, ctx, fresh)
    _print_outcome(outcome, plan, as_json)


def _print_dry_run(plan: TrainPlan, key: str, checks: Preflight, as_json: bool) -> None:
    if as_json:
        extra = {"run_key": key, "dry_run": True}
        click.echo(json.dumps(plan.as_dict() | checks.as_dict() | extra))
        return
    _print_plan(plan, key)
    for k, v in checks.rows().items():
        click.echo(f"{k:>10}: {v}")
    for warning in checks.warnings():
        click.echo(f"warning: {warning}")


def _print_outcome(o: Outcome, plan: TrainPlan, as_json: bool) -> None:
    complete = o.artifact is not None if o.stats else None
    payload = {
        "stage": o.stage,
        "artifact": o.key,
        "path": str(o.path),
        "reused": o.reused,
        "complete": complete,
        "record": str(Path(o.path) / "record.json"),
        "summary": {k: v for k, v in o.stats.items() if k not in ("unfinished", "seconds")},
    }
    if as_json:
        click.echo(json.dumps(payload))
        return
    s = payload["summary"]
    state = (
        "reused from cache"
        if o.reused
        else ("published" if complete else "stopped early (run again to resume)")
    )
    click.echo(f"train {o.key} ({state}): {o.path}")
    click.echo(
        f"  iterations {s.get('iterations')}/{plan.train_iters}, loss "
        f"{s.get('first_loss')} -> {s.get('last_loss')}, "
        f"{s.get('seconds_per_iteration', 0):.3f} s/it, "
        f"{s.get('tokens_per_second', 0):,.0f} tokens/s, "
        f"{s.get('tflops_per_gpu', 0):.1f} TFLOP/s/GPU, "
        f"peak {s.get('peak_memory_allocated_gib', 0):.1f} GiB"
    )


if __name__ == "__main__":
    train()
