"""The `pipe` command: parse, call the runner, print. Nothing else lives here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.artifacts import Cache, default_root
from pipeline.blend import load_blend
from pipeline.cli_common import cache_dir_option, user_errors
from pipeline.errors import PipeError
from pipeline.report import Reporter

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
        ]
    ):
        fn = decorator(fn)
    return fn


_workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs of the local Ray cluster [default: all cores].",
)


def _emit(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload))
    else:
        state = "reused from cache" if payload["reused"] else "built"
        click.echo(f"{payload['stage']} {payload['artifact']} ({state}): {payload['path']}")


def _emit_datasets(outcomes: list[Any], as_json: bool, with_stats: bool) -> None:
    """One line per dataset artifact; with --json, one object last that lists them all."""
    if not as_json:
        for o in outcomes:
            _emit(o.as_json(), False)
        return
    datasets = [
        o.as_json() | ({"stats": o.artifact.manifest["stats"]} if with_stats else {})
        for o in outcomes
    ]
    _emit(datasets[-1] | {"datasets": datasets, "reused": all(o.reused for o in outcomes)}, True)


def _runner(blend_path: Path, cache_dir: Path | None, quiet: bool, **opts: Any) -> Any:
    from pipeline.runner import Options, Runner  # the heavy imports wait until a command runs

    blend = load_blend(blend_path)
    cache = Cache(cache_dir or default_root())
    return Runner(blend, Options(cache=cache, reporter=Reporter(quiet=quiet), **opts))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipe")
def main() -> None:
    """pipe: prepare pretraining data for Megatron.

    download -> (curate) -> tokenize -> train, each stage a cached artifact keyed by what
    produced it. Start with `pipe tokenize --blend blends/small.json --limit 1000`.
    """


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
) -> None:
    """Fetch each dataset of the blend into Parquet shards (id, text, source columns)."""
    runner = _runner(blend_path, cache_dir, quiet, limit=limit)
    _emit_datasets(runner.download(force=force), as_json, with_stats=False)


@main.command()
@_common
@_workers_option
@_user_errors
def curate(
    blend_path: Path,
    limit: int | None,
    force: bool,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    workers: int | None,
) -> None:
    """Filter and deduplicate the datasets whose blend entry has a "curate" key.

    Runs NeMo Curator heuristic filters (ScoreFilter), exact and MinHash-LSH fuzzy dedup on
    CPU over the download shards, and prints what each step removed. `pipe tokenize` then
    reads the curated shards for those datasets.
    """
    runner = _runner(blend_path, cache_dir, quiet, limit=limit, workers=workers)
    _emit_datasets(runner.curate(force=force), as_json, with_stats=True)


@main.command()
@_common
@click.option(
    "--tokenizer", default=None, help="Hub id or local folder; overrides the blend's 'tokenizer'."
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    default=None,
    help="Run on this existing Ray cluster instead of starting a local one.",
)
@_workers_option
@_user_errors
def tokenize(
    blend_path: Path,
    limit: int | None,
    force: bool,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
    tokenizer: str | None,
    ray_address: str | None,
    workers: int | None,
) -> None:
    """Tokenize the blend into Megatron bin/idx (train/valid/test) and write blend.json.

    Uses the download (or, for datasets with "curate", the curate) artifacts, making them
    first if missing. Documents get the tokenizer's
    EOS as end-of-document; each goes to train, valid or test by a hash of its id.
    """
    runner = _runner(
        blend_path,
        cache_dir,
        quiet,
        limit=limit,
        tokenizer=tokenizer,
        ray_address=ray_address,
        workers=workers,
    )
    outcome = runner.tokenize(force=force)
    payload = outcome.as_json() | {"blend_json": str(outcome.artifact.path / "blend.json")}
    _emit(payload, as_json)
    if not as_json:
        click.echo(f"blend.json: {payload['blend_json']}")


@main.group()
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
    help="Hub id or folder [default: ../shared/tokenizers/nemotron-nano-compat].",
)
@click.option(
    "--scales",
    default="1,4",
    show_default=True,
    help="Corpus repetitions to run (fresh ids each), comma-separated.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs for pipe's Ray cluster [default: all cores].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON too.")
@_user_errors
def bench_tokenize_cmd(
    corpus: Path | None, tokenizer: str | None, scales: str, workers: int | None, as_json: bool
) -> None:
    """pipe tokenize vs the tokenizer's in-memory batch encode: tokens/s, ratio, peak RSS."""
    import os

    from pipeline import bench as b

    corpus = corpus or b.DEFAULT_CORPUS
    if not corpus.is_file():
        raise PipeError(f"{corpus}: no corpus; pass --corpus")
    rows = b.bench_tokenize(
        corpus, tokenizer or str(b.DEFAULT_TOKENIZER), [int(x) for x in scales.split(",")], workers
    )
    name = "GCIDE" if corpus == b.DEFAULT_CORPUS else "corpus"
    click.echo(b.table(rows, workers or os.cpu_count() or 1, name))
    if as_json:
        click.echo(json.dumps(rows))


@main.group()
def artifacts() -> None:
    """Inspect the artifact cache."""


@artifacts.command("ls")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per artifact.")
@_user_errors
def artifacts_ls(cache_dir: Path | None, as_json: bool) -> None:
    """List published artifacts, oldest first."""
    from rich.console import Console
    from rich.table import Table

    found = Cache(cache_dir or default_root()).all()
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
    table = Table()
    for col in ("key", "stage", "name", "created", "MB", "parents"):
        table.add_column(col)
    for a in found:
        size = sum(f["bytes"] for f in a.manifest.get("files", {}).values()) / 1e6
        table.add_row(
            a.key,
            a.stage,
            str(a.manifest.get("name")),
            a.manifest.get("created", ""),
            f"{size:,.1f}",
            " ".join(p[:8] for p in a.manifest.get("parents", [])),
        )
    Console().print(table)


@artifacts.command("show")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_show(key: str, cache_dir: Path | None) -> None:
    """Print an artifact's manifest (lineage, config, stats, file checksums)."""
    click.echo(json.dumps(Cache(cache_dir or default_root()).find(key).manifest, indent=2))


@artifacts.command("path")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_path(key: str, cache_dir: Path | None) -> None:
    """Print an artifact's folder (a key prefix is enough)."""
    click.echo(str(Cache(cache_dir or default_root()).find(key).path))


@artifacts.command("verify")
@click.argument("key")
@cache_dir_option
@_user_errors
def artifacts_verify(key: str, cache_dir: Path | None) -> None:
    """Re-hash every file of an artifact against its manifest; exit 1 naming what differs."""
    cache = Cache(cache_dir or default_root())
    art = cache.find(key)
    if problems := cache.problems(art, full=True):
        raise PipeError(f"{art.stage} {art.key}: {'; '.join(problems)}")
    click.echo(f"{art.stage} {art.key}: {len(art.manifest['files'])} files match their sha256")


from pipeline.cli_train import train  # noqa: E402 (registered last: it imports training/)

main.add_command(train)


if __name__ == "__main__":
    main()
