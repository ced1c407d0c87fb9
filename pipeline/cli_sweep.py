"""`pipe sweep FILE`: parse, check the sweep file, plan every variant, run them, print the table.

The sweep itself (planning, running, the record) is pipeline/sweep.py; the file format is
pipeline/sweep_file.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, user_errors
from pipeline.context import Context
from pipeline.progress import Display
from pipeline.sweep import check_distinct, execute, plan_variants, preview, resolve_data
from pipeline.sweep_file import Sweep, Variant, describe, load_sweep
from pipeline.sweep_record import measured, previous_entries, record_path
from training.tokenizer_check import TokenizerMismatch
from util.errors import PipeError

COLUMNS = ("variant", "changed", "status", "run", "s/iteration", "tokens/s", "peak GiB or reason")


def select(sweep: Sweep, only: tuple[str, ...]) -> list[Variant]:
    """The variants --only names (comma-separated or repeated), in file order; all without it."""
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = [v.name for v in sweep.variants]
    if unknown := [n for n in names if n not in known]:
        raise PipeError(f"--only {unknown[0]!r}: {sweep.path} has {', '.join(known)}")
    return [v for v in sweep.variants if not names or v.name in names]


@click.command("sweep", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sweep_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--blend",
    "blend_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Blend file or a megatron blend's blend.json [default: the sweep file's base.blend].",
)
@click.option("--only", multiple=True, help="Run only these variants (names, comma-separated).")
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Launch variants recorded as failed again (by default a rerun keeps their failure).",
)
@click.option("--dry-run", is_flag=True, help="Plan every variant and say what would run.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep record as the last line.")
@cache_dir_option
@click.option("--quiet", is_flag=True, help="No progress bars or tables.")
@user_errors(TokenizerMismatch)
def sweep(
    sweep_file: Path,
    blend_path: Path | None,
    only: tuple[str, ...],
    retry_failed: bool,
    dry_run: bool,
    as_json: bool,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Run a base pipe train configuration and variants that each change one variable.

    Each variant is its own cached run (reused once finished, resumed if interrupted: run the
    same command again). A failing variant (out of memory, a layout that does not divide) is
    recorded with its reason and the rest go on; the exit code is 1 if any failed. The record:
    <cache>/sweeps/<name>.json. Sweep files: training/sweeps/*.json.
    """
    spec = load_sweep(sweep_file)
    chosen = select(spec, only)
    check_distinct(spec)  # plans alone, before any data work
    given = blend_path or spec.blend
    blend = given.resolve() if given else None
    cache = Cache(cache_dir or default_root())
    with Context(Display(quiet=quiet)) as ctx:
        data, parent, name = resolve_data(spec, blend, cache, ctx)
        planned = plan_variants(chosen, data, parent, name, spec.mock)
        if dry_run:
            rows = preview(planned, cache, previous_entries(cache, spec.name), retry_failed)
            _print_plan(spec, rows, as_json)
            return
        record = execute(spec, planned, blend, cache, ctx, retry_failed)
        _table(ctx.display, spec, record)
    if as_json:
        click.echo(json.dumps(record))
    ran = {p.variant.name for p in planned}
    failed = [e["name"] for e in record["variants"] if e["status"] == "failed" and e["name"] in ran]
    if failed:
        raise PipeError(
            f"sweep {spec.name}: {len(failed)} of {len(ran)} variants failed "
            f"({', '.join(failed)}); record: {record_path(cache, spec.name)}"
        )


def _print_plan(spec: Sweep, rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {"sweep": spec.name, "file": str(spec.path), "dry_run": True, "variants": rows}
            )
        )
        return
    by_name = {v.name: v for v in spec.variants}
    click.echo(f"sweep {spec.name} ({spec.path}): {len(rows)} run(s) planned")
    for r in rows:
        why = f": {r['reason']}" if r["reason"] else ""
        click.echo(
            f"{r['name']:>20}  {describe(by_name[r['name']]):<48} {r['run_key'] or '-':<20} "
            f"{r['action']}{why}"
        )


def _table(display: Display, spec: Sweep, record: dict) -> None:
    by_name = {v.name: v for v in spec.variants}
    for e in record["variants"]:
        failed = e["status"] == "failed"
        s = {} if failed else measured(e["run_path"])
        last = escape(e["reason"] or "") if failed else _gib(s.get("peak_memory_allocated_gib"))
        display.add_row(
            e["name"],
            escape(describe(by_name[e["name"]])),
            e["status"],
            e["run_key"] or "-",
            f"{s['seconds_per_iteration']:.4f}" if "seconds_per_iteration" in s else "-",
            f"{s['tokens_per_second']:,.0f}" if "tokens_per_second" in s else "-",
            last,
        )
    display.summary(f"sweep {spec.name}", COLUMNS)


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
