"""`pipe artifacts`: list, show, locate, verify and remove what the cache holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, user_errors
from util.errors import PipeError

_user_errors = user_errors()


@click.group()
def artifacts() -> None:
    """Inspect the artifact cache."""


@artifacts.command("ls")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per artifact.")
@_user_errors
def artifacts_ls(cache_dir: Path | None, as_json: bool) -> None:
    """List published artifacts, oldest first (a table on a terminal; tab-separated lines
    with whole keys when piped)."""
    from rich.console import Console
    from rich.table import Table

    found = Cache.existing(cache_dir or default_root()).all()
    if as_json:
        for a in found:
            click.echo(
                json.dumps(
                    {
                        "artifact": a.key,
                        "stage": a.stage,
                        "name": a.manifest.get("name"),
                        "path": str(a.path),
                        "parents": a.manifest.get("parents", []),
                        "created": a.manifest.get("created"),
                    }
                )
            )
        return
    rows = [
        (
            a.key,
            a.stage,
            str(a.manifest.get("name")),
            a.manifest.get("created", ""),
            f"{sum(f['bytes'] for f in a.manifest.get('files', {}).values()) / 1e6:,.1f}",
            a.manifest.get("parents", []),
        )
        for a in found
    ]
    columns = ("key", "stage", "name", "created", "MB", "parents")
    console = Console()
    if not console.is_terminal:  # piped: whole keys, one tab-separated line per artifact
        click.echo("\t".join(columns))
        for *cells, parents in rows:
            click.echo("\t".join([*cells, ",".join(parents) or "-"]))
        return
    table = Table()
    for col in columns:
        table.add_column(col, no_wrap=col == "key")
    for *cells, parents in rows:
        table.add_row(*cells, " ".join(p[:8] for p in parents))
    console.print(table)


@artifacts.command("show")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_show(key: str, cache_dir: Path | None) -> None:
    """Print an artifact's manifest (lineage, config, stats, file checksums)."""
    click.echo(json.dumps(Cache.existing(cache_dir or default_root()).find(key).manifest, indent=2))


@artifacts.command("path")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_path(key: str, cache_dir: Path | None) -> None:
    """Print an artifact's folder (a key prefix is enough)."""
    click.echo(str(Cache.existing(cache_dir or default_root()).find(key).path))


@artifacts.command("verify")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_verify(key: str, cache_dir: Path | None) -> None:
    """Re-hash every file of an artifact against its manifest; exit 1 naming what differs."""
    cache = Cache.existing(cache_dir or default_root())
    art = cache.find(key)
    if problems := cache.problems(art, full=True):
        raise PipeError(f"{art.stage} {art.key}: {'; '.join(problems)}")
    click.echo(f"{art.stage} {art.key}: {len(art.manifest['files'])} files match their checksums")


def _report(found: list, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for r in found:
        click.echo(f"{verb} {r.path} ({r.why}, {r.bytes / 1e6:,.1f} MB)")
    total = sum(r.bytes for r in found) / 1e6
    click.echo(f"{verb} {len(found)} folder(s), {total:,.1f} MB")


@artifacts.command("rm")
@click.argument("key")
@cache_dir_option
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_user_errors
def artifacts_rm(key: str, cache_dir: Path | None, dry_run: bool) -> None:
    """Remove one published artifact (refused while another names it as a parent)."""
    from pipeline import housekeeping as hk

    cache = Cache.existing(cache_dir or default_root())
    found = [hk.removal_of(cache, cache.find(key))]
    if not dry_run:
        hk.remove(found)
    _report(found, dry_run)


@artifacts.command("gc")
@cache_dir_option
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Hours a work folder must be untouched before it counts as abandoned.",
)
@click.option(
    "--unreferenced",
    is_flag=True,
    help="Also remove download/curate/tokenize artifacts that no artifact names as a parent.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_user_errors
def artifacts_gc(
    cache_dir: Path | None, older_than: float, unreferenced: bool, dry_run: bool
) -> None:
    """Remove unpublished work left by failed or abandoned runs (never one being built)."""
    from pipeline import housekeeping as hk

    cache = Cache.existing(cache_dir or default_root())
    found = hk.stale_work(cache, older_than) + (hk.orphans(cache) if unreferenced else [])
    if not dry_run:
        hk.remove(found)
    _report(found, dry_run)
