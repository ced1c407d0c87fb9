"""`pipe inspect`: counts, lengths and decoded documents of a tokenize artifact or prefix."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cache import default_root
from pipeline.cli_common import cache_dir_option, user_errors

SHOWN_CHARS = 600


@click.command("inspect")
@click.argument("what")
@click.option(
    "--split",
    type=click.Choice(["train", "valid", "test"]),
    default="train",
    show_default=True,
    help="Which split of a tokenize artifact.",
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Documents to decode: the first, then random ones.",
)
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors()
def inspect_cmd(what: str, split: str, count: int, cache_dir: Path | None, as_json: bool) -> None:
    """Show what a tokenize artifact (a key or key prefix) or a bin/idx prefix holds.

    Documents and tokens, the document-length distribution, and documents decoded back to
    text with the artifact's tokenizer, the end-of-document token left visible.
    """
    from pipeline.inspect import inspect, resolve

    report = inspect(resolve(what, split, cache_dir or default_root()), count)
    if as_json:
        click.echo(json.dumps(report))
        return
    length = report["length"]
    click.echo(
        f"{report['prefix']}: {report['documents']:,} documents, "
        f"{report['tokens']:,} tokens ({report['dtype']})"
    )
    click.echo(
        f"document length in tokens: min {length['min']:,}, median "
        f"{length['median']:,.0f}, p99 {length['p99']:,.0f}, max {length['max']:,}"
    )
    click.echo(f"tokenizer: {report['tokenizer'] or 'unknown (showing ids)'}")
    for doc in report["docs"]:
        end = "ends with EOD" if doc["ends_with_eod"] else "NO EOD at its end"
        text = doc["text"]
        shown = (
            text
            if len(text) <= SHOWN_CHARS
            else f"{text[: SHOWN_CHARS // 2]} [...] {text[-SHOWN_CHARS // 2 :]}"
        )
        click.echo(f"\n--- document {doc['index']:,} ({doc['tokens']:,} tokens, {end}) ---")
        click.echo(shown)
