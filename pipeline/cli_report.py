"""`pipe report`: one self-contained HTML page about a blend, its artifacts and its runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cache import Cache, default_root
from pipeline.cli_common import cache_dir_option, make_planner, user_errors
from util.errors import PipeError
from util.files import atomic_write_text

if TYPE_CHECKING:
    from pipeline.lineage import Lineage

_user_errors = user_errors()


def write_report(lin: Lineage, output: Path) -> str:
    """Render the lineage's page and write it whole (or not at all) to `output`; returns the
    page. `pipe report` and `pipe run --report` both write through here."""
    from pipeline.report_page import render

    page = render(lin)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, page)
    return page


def missing_note(lin: Lineage) -> str | None:
    """The line naming what the page could not show because it is not built yet."""
    missing = [f"{n.stage} {n.name}" for n in lin.missing]
    return f"not built yet: {', '.join(missing)} (pipe tokenize builds them)" if missing else None


@click.command("report")
@click.argument("keys", nargs=-1)
@click.option(
    "--blend",
    "blend_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Blend file to report on: its artifacts are found by their keys, nothing is built.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write (opens offline in any browser).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="The --limit the blend was prepared with (it is part of the artifacts' keys).",
)
@click.option("--tokenizer", default=None, help="The --tokenizer it was prepared with, if any.")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@_user_errors
def report(
    keys: tuple[str, ...],
    blend_path: Path | None,
    output: Path,
    limit: int | None,
    tokenizer: str | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Write an HTML report of a blend: lineage, data per split, lengths, curation, runs.

    Name the blend with --blend FILE (and the --limit/--tokenizer it was prepared with), or
    name artifacts by KEY (a megatron blend, a tokenize artifact, a run; a prefix is enough):
    the report covers them, their ancestors, and every run trained on their blend. Open the
    file with any browser, e.g. `xdg-open report.html`; it needs no network.
    """
    from pipeline import lineage
    from pipeline.fingerprint import HashMemo

    if bool(blend_path) == bool(keys):
        raise PipeError("name what to report on: --blend FILE, or one or more artifact KEYs")
    cache = Cache.existing(cache_dir or default_root())
    if blend_path:
        memo = HashMemo(cache.root / ".hashes.json")
        planner = make_planner(blend_path, memo, limit=limit, tokenizer=tokenizer)
        lin = lineage.from_planner(planner, cache)
    else:
        if limit or tokenizer:
            raise PipeError("--limit/--tokenizer select a blend file's artifacts; use --blend")
        lin = lineage.from_keys(keys, cache)
    page = write_report(lin, output)
    if as_json:
        payload = {
            "report": str(output.resolve()),
            "title": lin.title,
            "artifacts": [
                {"stage": n.stage, "name": n.name, "key": n.key, "built": n.artifact is not None}
                for n in lin.nodes
            ],
            "missing": [f"{n.stage} {n.name}" for n in lin.missing],
            "runs": [{"run": r.key, "label": r.label, "status": r.status} for r in lin.runs],
            "plots": page.count("<img class='plot'"),
        }
        click.echo(json.dumps(payload))
        return
    if note := missing_note(lin):
        click.echo(note, err=True)
    click.echo(f"report: {output.resolve()} ({len(lin.nodes)} artifacts, {len(lin.runs)} runs)")
