"""`pipe train`: resolve the data artifact, plan the launch, run torchrun, record the run.

The data side goes through the cache (the blend's tokenize artifact, made if missing); the
training side is `training/` (plan, launch, record). A run is itself an artifact: it is built
in the cache's work area, where an interrupted run resumes from its last checkpoint, and is
published with its data artifact as parent once it reaches `train_iters`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.artifacts import MANIFEST, Artifact, Cache, default_root, make_key
from pipeline.cli_common import cache_dir_option, user_errors
from pipeline.errors import PipeError
from pipeline.report import Reporter
from training.data import BlendFileError, check_blend_json
from training.layout import LayoutError
from training.overrides import OverrideError, parse_overrides
from training.plan import (
    PRECISION_RECIPES,
    DataSource,
    PlanError,
    Rendezvous,
    TrainPlan,
    build_plan,
    place,
    resolve_nproc,
    write_plan,
)
from training.presets import PRESETS
from training.switches import describe
from training.tokenizer_check import TokenizerMismatch, check_tokenizer

STAGE = "train"
VERSION = 1
MOCK_VOCAB = 131072

_user_errors = user_errors(PlanError, LayoutError, OverrideError, TokenizerMismatch, BlendFileError)


def blend_artifact_of(blend_json: Path) -> Artifact | None:
    """The published blend artifact a blend.json belongs to, if it is one."""
    manifest_path = blend_json.parent / MANIFEST
    if blend_json.name != "blend.json" or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("stage") != "blend":
        return None
    return Artifact(manifest["key"], "blend", blend_json.parent.resolve(), manifest)


def resolve_data(
    blend_path: Path, cache: Cache, reporter: Reporter, limit: int | None, tokenizer: str | None
) -> tuple[DataSource, str]:
    """The blend's tokenize artifact (made if missing) as a DataSource, and its name.

    `--blend` is a blend file (blends/*.json), or the blend.json of a published artifact,
    which is then used as it is.
    """
    art = blend_artifact_of(blend_path)
    if art is None:
        from pipeline.blend import load_blend
        from pipeline.runner import Options, Runner

        runner = Runner(
            load_blend(blend_path),
            Options(cache=cache, reporter=reporter, limit=limit, tokenizer=tokenizer),
        )
        art = runner.tokenize().artifact
    elif tokenizer or limit:
        raise PipeError(
            f"{blend_path} is already tokenized; --tokenizer/--limit apply to blend files only"
        )
    config = art.manifest["config"]
    blend_json = art.path / "blend.json"
    check_blend_json(blend_json)
    source = DataSource(
        blend_json=str(blend_json),
        tokenizer=config["tokenizer"],
        vocab_size=int(config["vocab_size"]),
        eod_id=int(config["eod_id"]),
        artifact=art.key,
    )
    return source, str(art.manifest.get("name") or art.key)


def run_key(plan: TrainPlan) -> str:
    parents = [plan.data_artifact] if plan.data_artifact else []
    return make_key(STAGE, VERSION, plan.identity(), parents, {})


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
    help="Blend file (blends/*.json), or a tokenize artifact's blend.json.",
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
    help="fp8 and nvfp4 need Transformer Engine.",
)
@click.option("--mock", is_flag=True, help="Train on synthetic data (no --blend).")
@click.option("--dry-run", is_flag=True, help="Print the plan; launch nothing.")
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
    cache_dir: Path | None,
    quiet: bool,
    overrides: tuple[str, ...],
) -> None:
    """Pretrain a GPT on the blend's tokens with Megatron-Bridge, launched by torchrun.

    KEY=VALUE arguments are Megatron-Bridge dotlist overrides, e.g. train.train_iters=5000
    train.global_batch_size=64 checkpoint.save_interval=500.
    """
    parse_overrides(overrides)  # misspelled keys fail here, before any data work
    reporter = Reporter(quiet=quiet)
    cache = Cache(cache_dir or default_root())
    if mock and blend_path:
        raise PipeError("--mock trains on synthetic data; drop --blend (or drop --mock)")
    if mock:
        data = DataSource(
            blend_json=None, tokenizer="NullTokenizer", vocab_size=MOCK_VOCAB, eod_id=MOCK_VOCAB - 1
        )
        data_name = "mock"
    elif blend_path is None:
        raise PipeError("pass --blend FILE (or --mock to train on synthetic data)")
    else:
        data, data_name = resolve_data(blend_path, cache, reporter, limit, tokenizer)
        check_tokenizer(data.tokenizer, data.vocab_size, data.eod_id)

    rdzv = Rendezvous(
        nnodes=nnodes,
        node_rank=node_rank,
        endpoint=rdzv_endpoint,
        rdzv_id=rdzv_id,
        backend=rdzv_backend,
    )
    plan = build_plan(
        model=model,
        data=data,
        nproc_per_node=resolve_nproc(nproc_per_node),
        tp=tp,
        pp=pp,
        precision=precision,
        overrides=overrides,
        mock=mock,
        rendezvous=rdzv,
    )
    key = run_key(plan)
    done = cache.get(STAGE, key)
    if dry_run:
        where = done.path if done and not fresh else cache.root / ".work" / key
        plan = place(plan, where, key)
        if as_json:
            click.echo(json.dumps(plan.as_dict() | {"run_key": key, "dry_run": True}))
        else:
            _print_plan(plan, key)
        return
    outcome = _run(plan, key, cache, reporter, fresh, data_name)
    if as_json:
        click.echo(json.dumps(outcome))
    else:
        s = outcome["summary"]
        state = (
            "reused from cache"
            if outcome["reused"]
            else ("published" if outcome["complete"] else "stopped early (run again to resume)")
        )
        click.echo(f"train {key} ({state}): {outcome['path']}")
        click.echo(
            f"  iterations {s.get('iterations')}/{plan.train_iters}, loss "
            f"{s.get('first_loss')} -> {s.get('last_loss')}, "
            f"{s.get('seconds_per_iteration', 0):.3f} s/it, "
            f"{s.get('tokens_per_second', 0):,.0f} tokens/s, "
            f"{s.get('tflops_per_gpu', 0):.1f} TFLOP/s/GPU, "
            f"peak {s.get('peak_memory_allocated_gib', 0):.1f} GiB"
        )


def _run(
    plan: TrainPlan, key: str, cache: Cache, reporter: Reporter, fresh: bool, data_name: str
) -> dict[str, Any]:
    """Launch (or reuse) the run; publish it when it reached train_iters."""
    from training.launch import launch
    from training.record import RECORD_FILE, assemble

    if plan.nnodes > 1 and plan.rendezvous["node_rank"] != 0:
        # Other nodes only launch their ranks; node 0 holds the lock, records and publishes.
        placed = place(plan, cache.root / ".work" / key, key)
        Path(placed.run_dir).mkdir(parents=True, exist_ok=True)
        write_plan(placed)
        code, log = launch(placed)
        if code:
            raise PipeError(f"training exited with code {code}; see {log}")
        return {
            "stage": STAGE,
            "artifact": key,
            "path": placed.run_dir,
            "reused": False,
            "complete": None,
            "summary": {},
        }

    with cache.lock(key, reporter.say):
        if not fresh and (art := cache.get(STAGE, key)):
            return _outcome(art.path, key, True, True, art.manifest["stats"])
        work = cache.work_dir(key, fresh=fresh)
        placed = place(plan, work, key)
        write_plan(placed)
        if placed.resume_iteration:
            reporter.say(f"train {key}: resuming from iteration {placed.resume_iteration}")
        code, log = launch(placed)
        rec = assemble(work, placed.as_dict())
        if code:
            raise PipeError(
                f"training exited with code {code}; see {log}. The run keeps its "
                f"checkpoints in {work}: run the same command to resume"
            )
        summary = rec["summary"]
        if summary.get("iterations", 0) < plan.train_iters:
            return _outcome(work, key, False, False, summary)
        parents = [plan.data_artifact] if plan.data_artifact else []
        config = plan.identity() | {
            "tp": plan.tp,
            "pp": plan.pp,
            "dp": plan.dp,
            "world_size": plan.world_size,
        }
        art = cache.publish(
            STAGE,
            key,
            work,
            name=f"{plan.model}-{data_name}",
            config=config,
            parents=parents,
            inputs={},
            stats=summary,
        )
        return _outcome(art.path, key, False, True, summary) | {
            "record": str(art.path / RECORD_FILE)
        }


def _outcome(
    path: Path, key: str, reused: bool, complete: bool, summary: dict[str, Any]
) -> dict[str, Any]:
    return {
        "stage": STAGE,
        "artifact": key,
        "path": str(path),
        "reused": reused,
        "complete": complete,
        "record": str(Path(path) / "record.json"),
        "summary": summary,
    }


if __name__ == "__main__":
    train()
