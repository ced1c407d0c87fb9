"""`pipe bench`: benchmarks that run the baseline and the peers in one run and print ratios."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from pipeline.cli_common import user_errors
from util.errors import PipeError

_user_errors = user_errors()


@click.group()
def bench() -> None:
    """Benchmarks that print a table of measured ratios."""


@bench.command("tokenize")
@click.option(
    "--corpus",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="jsonl(.gz) with 'id' and 'text' [default: ../shared/corpora/gcide.jsonl.gz].",
)
@click.option(
    "--tokenizer",
    default=None,
    help="Folder with tokenizer.json [default: ../shared/tokenizers/nemotron-nano-compat].",
)
@click.option(
    "--scales",
    default="1,4,16",
    show_default=True,
    help="Corpus repetitions to run (fresh ids each), comma-separated.",
)
@click.option(
    "--hf-max-scale",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Largest scale at which to measure the (slow) HF tokenizers ceiling.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Cores for pipe's engine [default: all]; the ceilings and the peer use every core.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Times every contender runs per scale, in turn; the table shows medians.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON too.")
@_user_errors
def bench_tokenize_cmd(
    corpus: Path | None,
    tokenizer: str | None,
    scales: str,
    hf_max_scale: int,
    workers: int | None,
    rounds: int,
    as_json: bool,
) -> None:
    """pipe tokenize vs Megatron-LM's fast path and the tokenizers' ceilings, same machine."""
    from pipeline import bench as b

    corpus = corpus or b.DEFAULT_CORPUS
    if not corpus.is_file():
        raise PipeError(f"{corpus}: no corpus; pass --corpus")
    tok = str(Path(tokenizer).resolve()) if tokenizer else str(b.DEFAULT_TOKENIZER)
    scale_list = [int(x) for x in scales.split(",")]
    rows = b.bench_tokenize(corpus, tok, scale_list, workers, hf_max_scale, rounds)
    name = "GCIDE" if corpus == b.DEFAULT_CORPUS else "corpus"
    click.echo(b.table(rows, os.cpu_count() or 1, workers, name))
    if as_json:
        click.echo(json.dumps(rows))
