"""`pipe run`: every stage of a blend up to `--until`, cache-aware, ending with one lineage
table; and `--dry-run`'s printing, which the stage commands share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.artifact import Outcome
from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, make_planner, user_errors
from pipeline.context import Context
from pipeline.dry_run import make_plan, render, tokenizer_note
from pipeline.fingerprint import HashMemo
from pipeline.plan import Planner, Step
from pipeline.progress import Display
from pipeline.run import ensure
from pipeline.run_train import TrainArgs, memory_check_options
from training.options import PRECISION_RECIPES
from util.errors import PipeError

STAGE_ORDER = ("download", "curate", "tokenize", "megatron_blend", "train")
TRAIN_OPTIONS = (
    "model",
    "nproc_per_node",
    "tp",
    "pp",
    "precision",
    "gpu_memory",
    "no_memory_check",
    "overrides",
)


def print_plan(
    planner: Planner, cache: Cache, until: str, as_json: bool, train: Any = None
) -> None:
    """--dry-run: the plan on stdout (as one JSON object with --json)."""
    plan = make_plan(planner, cache, until, train)
    click.echo(json.dumps(plan) if as_json else "\n".join(render(plan)))


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--blend",
    "blend_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Blend file (blends/*.json) naming the datasets and tokenizer.",
)
@click.option(
    "--until",
    type=click.Choice(["download", "curate", "tokenize", "train"]),
    default="tokenize",
    show_default=True,
    help="Last stage to run. train needs GPUs, so it runs only when asked.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and estimates; build nothing.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N docs/dataset.")
@click.option("--tokenizer", default=None, help="Hub id or folder; overrides the blend's.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "gigatoken", "hf"]),
    default="auto",
    show_default=True,
    help="Tokenization engine (the same tokens either way).",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Cores [default: all].")
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    default=None,
    help="Ray cluster for the stages that use one; 'local' starts one here.",
)
@click.option("--model", default="1b", show_default=True, help="Model preset (--until train).")
@click.option(
    "--nproc-per-node", default="auto", show_default=True, help="GPUs per node (--until train)."
)
@click.option("--tp", type=click.IntRange(min=1), default=None, help="Tensor parallel size.")
@click.option("--pp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISION_RECIPES)),
    default="bf16",
    show_default=True,
    help="Training precision (--until train).",
)
@memory_check_options
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="At the end, write the blend's HTML report here (as `pipe report --blend`) and "
    "print its path last.",
)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object as the last stdout line.")
@click.option("--quiet", is_flag=True, help="No progress bars or tables.")
@click.argument("overrides", nargs=-1)
@click.pass_context
def run_cmd(click_ctx: click.Context, **kw: Any) -> None:
    """Run the blend's stages up to --until: reuse what the cache holds (and say so), build the
    rest, then print one table of every artifact used or built, with its parents.

    KEY=VALUE arguments are Megatron-Bridge overrides for --until train (as `pipe train`).
    """
    if kw["until"] != "train":
        user_errors()(_run)(click_ctx, **kw)
        return
    from pipeline.run_train import train_errors  # training/ loads only for --until train

    user_errors(*train_errors())(_run)(click_ctx, **kw)


def _run(
    click_ctx: click.Context,
    blend_path: Path,
    until: str,
    dry_run: bool,
    limit: int | None,
    tokenizer: str | None,
    engine: str,
    workers: int | None,
    ray_address: str | None,
    report_path: Path | None,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    **train_kw: Any,
) -> None:
    asked = [k for k in TRAIN_OPTIONS if _given(click_ctx, k)]
    if asked and until != "train":
        what = (
            "KEY=VALUE overrides apply"
            if asked[0] == "overrides"
            else f"--{asked[0].replace('_', '-')} applies"
        )
        raise PipeError(f"{what} to training; add --until train")
    train = TrainArgs(**train_kw) if until == "train" else None
    cache = Cache(cache_dir or default_root())
    memo = HashMemo(cache.root / ".hashes.json")
    planner = make_planner(blend_path, memo, limit=limit, tokenizer=tokenizer, engine=engine)
    if dry_run:
        if report_path:
            raise PipeError("--dry-run builds nothing to report on; drop --report (or --dry-run)")
        print_plan(planner, cache, until, as_json, train)
        return
    if train:  # a bad layout or override, or a plan that cannot fit, fails before any data
        from pipeline.run_train import planned_run

        planned_run(train, planner.megatron_blend()[0], cache, refuse=not train.no_memory_check)
    finals = _finals(planner, until)
    display = Display(quiet=quiet)
    with Context(display, ray_address=ray_address, workers=workers) as ctx:
        for step in _in_stage_order(finals):
            outcome = ensure(step, cache, ctx, set())
            if not quiet:
                state = "reused from the cache" if outcome.reused else "built"
                ctx.say(f"{step.stage} {step.name}: {state} ({step.key})")
        if train:
            from pipeline.train import train_on

            blend = ctx.outcomes[finals[0].key].artifact
            train_on(train.launch(), blend, cache, ctx)
        outcomes = list(ctx.outcomes.values())
        note = tokenizer_note(planner) if until in ("tokenize", "train") else None
        _lineage_table(display, outcomes, note)
    report = _report(planner, cache, report_path, display) if report_path else None
    _emit(outcomes, as_json, note, report)


def _given(click_ctx: click.Context, name: str) -> bool:
    source = click_ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _finals(planner: Planner, until: str) -> list[Step]:
    """The last steps of the run; their parents come with them."""
    datasets = planner.blend.datasets
    if until == "download":
        return [planner.download(ds) for ds in datasets]
    if until == "curate":
        if not any(ds.curate is not None for ds in datasets):
            raise PipeError(
                f"{planner.blend.path}: no dataset has a 'curate' key, so there is nothing to "
                f'curate; use --until download or tokenize, or add "curate": {{}} to a dataset'
            )
        return [planner.source(ds) for ds in datasets]
    return [planner.megatron_blend()[0]]


def _in_stage_order(finals: list[Step]) -> list[Step]:
    """Every step the finals need, parents before children, stage by stage: downloads first,
    so the first missing artifact is built first and the rest follow."""
    seen: dict[str, Step] = {}

    def visit(step: Step) -> None:
        for parent in step.parents:
            if isinstance(parent, Step):
                visit(parent)
        seen.setdefault(step.key, step)

    for step in finals:
        visit(step)
    return sorted(seen.values(), key=lambda s: STAGE_ORDER.index(s.stage))


def _name(o: Outcome) -> str:
    return str(o.artifact.manifest.get("name")) if o.artifact else o.key


def _parents(o: Outcome) -> list[str]:
    return list(o.artifact.manifest.get("parents", [])) if o.artifact else []


def _lineage_table(display: Display, outcomes: list[Outcome], note: str | None) -> None:
    for o in outcomes:
        state = "reused" if o.reused else ("built" if o.artifact else "unfinished")
        display.add_row(o.stage, _name(o), o.key, state, " ".join(p[:8] for p in _parents(o)))
    display.summary("artifacts (lineage)", ("stage", "name", "key", "status", "parents"))
    if note and not display.quiet:
        display.say(f"note: {note}")


def _report(planner: Planner, cache: Cache, output: Path, display: Display) -> Path:
    """The blend's HTML report, written as `pipe report --blend` writes it."""
    from pipeline.cli_report import missing_note, write_report
    from pipeline.lineage import from_planner

    lin = from_planner(planner, cache)
    write_report(lin, output)
    if (note := missing_note(lin)) and not display.quiet:
        display.say(note)
    return output.resolve()


def _emit(outcomes: list[Outcome], as_json: bool, note: str | None, report: Path | None) -> None:
    rows = [
        {
            "stage": o.stage,
            "name": _name(o),
            "artifact": o.key,
            "path": str(o.path),
            "reused": o.reused,
            "parents": _parents(o),
        }
        for o in outcomes
    ]
    if as_json:
        last = rows[-1]
        payload = last | {"artifacts": rows, "reused": all(r["reused"] for r in rows)}
        payload |= ({"note": note} if note else {}) | ({"report": str(report)} if report else {})
        click.echo(json.dumps(payload))
        return
    for r in rows[-1:]:
        state = "reused from cache" if r["reused"] else "built"
        click.echo(f"{r['stage']} {r['artifact']} ({state}): {r['path']}")
    if report:
        click.echo(f"report: {report}")
