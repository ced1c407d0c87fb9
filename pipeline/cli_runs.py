"""`pipe runs`: list the cache's training runs and compare runs side by side (with plots)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, user_errors
from pipeline.compare import METRICS, PEAK_TFLOPS, comparison, formatted, key_settings
from pipeline.runs import Run, cache_runs, resolve
from util.errors import PipeError

_user_errors = user_errors()


@click.group()
def runs() -> None:
    """List and compare training runs (pipe train's run records)."""


@runs.command("ls")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@_user_errors
def runs_ls(cache_dir: Path | None, as_json: bool) -> None:
    """List the cache's runs: published, running, stopped early or failed, with key settings."""
    found = cache_runs(Cache.existing(cache_dir or default_root()))
    if as_json:
        for r in found:
            click.echo(json.dumps(_ls_row(r)))
        return
    if not found:
        click.echo("no training runs in the cache (start one with `pipe train`)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    heads = ("run", "status", "model", "layout", "precision", "batch", "iterations",
             "last loss", "tokens/s")  # fmt: skip
    for col in heads:
        table.add_column(col)
    for r in found:
        s = key_settings(r)
        table.add_row(
            (r.key or "")[:12],
            r.status,
            *(formatted(s[k]) for k in ("model", "layout", "precision", "batch", "iterations")),
            formatted(s["last_loss"], "{:.4f}"),
            formatted(s["tokens_per_second"], "{:,.0f}"),
        )
    Console().print(table)
    for r in found:
        if r.reason:
            click.echo(f"{(r.key or '')[:12]} {r.status}: {r.reason}")


@runs.command("compare")
@click.argument("run", nargs=-1, required=True)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write PNG plots here: loss vs iteration and vs tokens, throughput, memory.",
)
@click.option(
    "--peak-tflops",
    type=click.FloatRange(min=0, min_open=True),
    default=PEAK_TFLOPS,
    show_default=True,
    help="Per-GPU peak that MFU is measured against (bf16 matmul peak measured on an H200).",
)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (runs, differing).")
@_user_errors
def runs_compare(
    run: tuple[str, ...],
    plots_dir: Path | None,
    peak_tflops: float,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Compare runs side by side; the settings that differ between them come first.

    RUN is a run key (or prefix), a run folder, a record.json, or a sweep (its file, or its
    name under the cache's sweeps/). Failed runs are shown with their reason. Train and valid
    loss are taken at the last iteration every run reached.
    """
    root = cache_dir or default_root()
    found = _unique_labels([r for what in run for r in resolve(what, root)])
    result = comparison(found, peak_tflops)
    if plots_dir is not None:
        result["plots"] = _write_plots(found, plots_dir)
    if as_json:
        click.echo(json.dumps(result))
        return
    _print_table(result)
    for path in result.get("plots", []):
        click.echo(f"plot: {path}")


def _write_plots(found: list[Run], folder: Path) -> list[str]:
    from pipeline.plots import run_plots, save_png

    if not any(r.record for r in found):
        raise PipeError("none of these runs has a record to plot")
    folder.mkdir(parents=True, exist_ok=True)
    return [str(save_png(fig, folder / f"{stem}.png")) for stem, fig in run_plots(found).items()]


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    matched = result["matched"]
    table = Table(title="runs compared (highlighted: settings that differ)")
    table.add_column("")
    for row in result["runs"]:
        table.add_column(row["label"])
    for key in result["differing"]:
        cells = [formatted(row["differing"].get(key)) for row in result["runs"]]
        table.add_row(f"[bold yellow]{key}[/]", *(f"[bold yellow]{c}[/]" for c in cells))
    table.add_row(
        "status",
        *(
            f"[red]{r['status']}[/]" if r["status"] == "failed" else r["status"]
            for r in result["runs"]
        ),
        end_section=True,
    )
    at = {"train_loss": matched["train_iteration"], "valid_loss": matched["valid_iteration"]}
    for key, heading, fmt in METRICS:
        label = f"{heading} @{at[key]}" if key in at and at[key] else heading
        table.add_row(label, *(formatted(r["metrics"][key], fmt) for r in result["runs"]))
    Console().print(table)
    for r in result["runs"]:
        if r["reason"]:
            click.echo(f"{r['label']}: {r['status']}: {r['reason']}")
    if not result["differing"]:
        click.echo("no setting differs between the recorded runs")


def _ls_row(r: Run) -> dict[str, Any]:
    return {
        "run": r.key,
        "status": r.status,
        "reason": r.reason,
        "name": r.name,
        "path": str(r.path) if r.path else None,
        "created": r.created,
        "settings": key_settings(r),
    }


def _unique_labels(found: list[Run]) -> list[Run]:
    """Columns need distinct headings: a label seen before gets its key (or a number)."""
    seen: dict[str, int] = {}
    out = []
    for r in found:
        n = seen.get(r.label, 0)
        seen[r.label] = n + 1
        if n:
            suffix = (r.key or "")[:8] or str(n + 1)
            r = Run(**(vars(r) | {"label": f"{r.label} ({suffix})"}))
        out.append(r)
    return out
