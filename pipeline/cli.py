"""The `pipe` command: parse, plan (pipeline/plan.py), run (pipeline/run.py), print."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.artifact import Outcome
from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, make_planner, user_errors
from pipeline.cli_run import print_plan
from pipeline.context import Context
from pipeline.dry_run import tokenizer_note
from pipeline.fingerprint import HashMemo
from pipeline.plan import Planner, Step
from pipeline.progress import Display
from pipeline.run import ensure, summarise
from stages.megatron_blend import BLEND_JSON
from util.arrow_memory import use_jemalloc
from util.errors import PipeError
from util.quick_exit import run_and_exit

_user_errors = user_errors()


def _common(fn: Callable) -> Callable:
    """Options every stage command takes."""
    for decorator in reversed(
        [
            click.option(
                "--blend",
                "blend_path",
                required=True,
                type=click.Path(path_type=Path),
                help="Blend file (blends/*.json) naming the datasets and tokenizer.",
            ),
            click.option(
                "--limit",
                type=click.IntRange(min=1),
                default=None,
                help="At most N documents per dataset (for quick runs and tests).",
            ),
            click.option(
                "--force", is_flag=True, help="Redo this stage even if its artifact is cached."
            ),
            cache_dir_option,
            click.option(
                "--json",
                "as_json",
                is_flag=True,
                help="Print one JSON object (artifact, path, reused, ...) as the last line.",
            ),
            click.option("--quiet", is_flag=True, help="No progress bars or tables."),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Print the plan: sources, what is cached and what would be built, and "
                "estimated documents, tokens and disk. Builds nothing.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


_workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Cores to use: the engine's threads, or the CPUs of a local Ray cluster "
    "[default: all cores].",
)


def _ray_address_option(without: str) -> Callable:
    """--ray-address of the commands that run Ray tasks; `without` says what happens without."""
    return click.option(
        "--ray-address",
        envvar="RAY_ADDRESS",
        show_envvar=True,
        default=None,
        help="Run on this Ray cluster, which pipe joins and leaves running (its nodes share the "
        f"cache folder); 'local' starts one here. {without}",
    )


def _payload(o: Outcome) -> dict[str, Any]:
    return {
        "artifact": o.key,
        "stage": o.stage,
        "name": o.artifact.manifest.get("name") if o.artifact else None,
        "path": str(o.path),
        "reused": o.reused,
        "seconds": round(o.seconds, 3),
    }


def _emit(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload))
    else:
        state = "reused from cache" if payload["reused"] else "built"
        click.echo(f"{payload['stage']} {payload['artifact']} ({state}): {payload['path']}")


def _emit_datasets(outcomes: list[Outcome], as_json: bool, with_stats: bool) -> None:
    """One line per dataset artifact; with --json, one object last that lists them all."""
    if not as_json:
        for o in outcomes:
            _emit(_payload(o), False)
        return
    datasets = [_payload(o) | ({"stats": o.stats} if with_stats else {}) for o in outcomes]
    _emit(datasets[-1] | {"datasets": datasets, "reused": all(o.reused for o in outcomes)}, True)


def _planner(blend_path: Path, cache: Cache, **opts: Any) -> Planner:
    return make_planner(blend_path, HashMemo(cache.root / ".hashes.json"), **opts)


def _run_all(steps: list[Step], cache: Cache, ctx: Context, force: set[str]) -> list[Outcome]:
    return [ensure(s, cache, ctx, force) for s in steps]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipe")
def main() -> None:
    """pipe: prepare pretraining data for Megatron.

    download -> (curate) -> tokenize -> train, each stage a cached artifact keyed by what
    produced it. Start offline with `pipe tokenize --blend blends/gcide.json` (GCIDE and the
    Nemotron-compatible tokenizer from ../shared), or with the Hugging Face hub reachable,
    `pipe tokenize --blend blends/small.json --limit 1000`.
    """
    use_jemalloc()


@main.command()
@_common
@_user_errors
def download(
    blend_path: Path,
    limit: int | None,
    force: bool,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
) -> None:
    """Fetch each dataset of the blend into Parquet shards (id, text, source columns).

    Runs in this process, without Ray (it reads files or the hub; no --ray-address): on a
    cluster, `pipe curate` and `pipe tokenize --ray-address` then read its shards from the
    shared cache folder.
    """
    cache = Cache(cache_dir or default_root())
    planner = _planner(blend_path, cache, limit=limit)
    if dry_run:
        print_plan(planner, cache, "download", as_json)
        return
    steps = [planner.download(ds) for ds in planner.blend.datasets]
    with Context(Display(quiet=quiet)) as ctx:
        outcomes = _run_all(steps, cache, ctx, {"download"} if force else set())
        summarise(ctx, "download", outcomes)
    _emit_datasets(outcomes, as_json, with_stats=False)


@main.command()
@_common
@_ray_address_option("Without it, curate starts a Ray cluster here and stops it at the end.")
@_workers_option
@_user_errors
def curate(
    blend_path: Path,
    limit: int | None,
    force: bool,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    ray_address: str | None,
    workers: int | None,
) -> None:
    """Filter and deduplicate the datasets whose blend entry has a "curate" key.

    Runs NeMo Curator heuristic filters (ScoreFilter), exact and MinHash-LSH fuzzy dedup on
    CPU over the download shards, and prints what each step removed. `pipe tokenize` then
    reads the curated shards for those datasets.
    """
    cache = Cache(cache_dir or default_root())
    planner = _planner(blend_path, cache, limit=limit)
    wanted = [ds for ds in planner.blend.datasets if ds.curate is not None]
    if not wanted:
        raise PipeError(
            f"{planner.blend.path}: no dataset has a 'curate' key; add \"curate\": {{}} to a "
            f"dataset for the default filters and dedup"
        )
    if dry_run:
        print_plan(planner, cache, "curate", as_json)
        return
    steps = [planner.curate(ds) for ds in wanted]
    with Context(Display(quiet=quiet), ray_address=ray_address, workers=workers) as ctx:
        outcomes = _run_all(steps, cache, ctx, {"curate"} if force else set())
        summarise(ctx, "curate", outcomes)
    _emit_datasets(outcomes, as_json, with_stats=True)


@main.command()
@_common
@click.option(
    "--tokenizer", default=None, help="Hub id or local folder; overrides the blend's 'tokenizer'."
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "gigatoken", "hf"]),
    default="auto",
    show_default=True,
    help="Tokenization engine: GigaToken where it loads the tokenizer (auto), or Hugging Face "
    "tokenizers (hf). Both give the same tokens.",
)
@_ray_address_option("Without it, tokenize runs in this process on every core.")
@_workers_option
@_user_errors
def tokenize(
    blend_path: Path,
    limit: int | None,
    force: bool,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    tokenizer: str | None,
    engine: str,
    ray_address: str | None,
    workers: int | None,
) -> None:
    """Tokenize the blend into Megatron bin/idx (train/valid/test) and write blend.json.

    Uses the download (or, for datasets with "curate", the curate) artifacts, making them
    first if missing. Documents get the tokenizer's
    EOS as end-of-document; each goes to train, valid or test by a hash of its id.
    """
    cache = Cache(cache_dir or default_root())
    planner = _planner(blend_path, cache, limit=limit, tokenizer=tokenizer, engine=engine)
    if dry_run:
        print_plan(planner, cache, "tokenize", as_json)
        return
    blend_step, token_steps = planner.megatron_blend()
    ctx = Context(Display(quiet=quiet), ray_address=ray_address, workers=workers)
    with ctx:
        force_stages = {"tokenize", "megatron_blend"} if force else set()
        # The megatron blend's build ensures its tokenize parents, all under its lock, so a
        # second run of the same blend file waits for the first and then reuses everything.
        outcome = ensure(blend_step, cache, ctx, force_stages)
        tokens = [ctx.outcomes.get(s.key) or ensure(s, cache, ctx, set()) for s in token_steps]
        summarise(ctx, "tokenize", tokens)
        if (note := tokenizer_note(planner)) and not quiet:
            ctx.say(f"note: {note}")
    payload = (
        _payload(outcome)
        | {
            "blend_json": str(outcome.path / BLEND_JSON),
            "reused": all(o.reused for o in [*tokens, outcome]),
        }
        | ({"note": note} if note else {})
    )
    _emit(payload, as_json)
    if not as_json:
        click.echo(f"blend.json: {payload['blend_json']}")


from pipeline.cli_artifacts import artifacts  # noqa: E402
from pipeline.cli_bench import bench  # noqa: E402
from pipeline.cli_inspect import inspect_cmd  # noqa: E402
from pipeline.cli_report import report  # noqa: E402
from pipeline.cli_run import run_cmd  # noqa: E402
from pipeline.cli_runs import runs  # noqa: E402
from pipeline.cli_sweep import sweep  # noqa: E402
from pipeline.cli_train import train  # noqa: E402 (registered last: it imports training/)

main.add_command(artifacts)
main.add_command(bench)
main.add_command(inspect_cmd)
main.add_command(report)
main.add_command(run_cmd)
main.add_command(runs)
main.add_command(train)
main.add_command(sweep)


def entry() -> None:
    """The `pipe` executable: `main`, then out without the interpreter's teardown."""
    run_and_exit(main)


if __name__ == "__main__":
    entry()
