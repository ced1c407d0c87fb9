"""What every `pipe` command shares: the one-line error handling and the cache option."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.blend_file import load_blend
from pipeline.fingerprint import HashMemo
from pipeline.plan import Options, Planner
from stages.download import SHARD_COMPRESSIONS
from util.errors import PipeError


def user_errors(*more: type[Exception]) -> Callable[[Callable], Callable]:
    """Turn errors a user can fix (and `more`) into one line on stderr, exit 1, no traceback."""
    known = (PipeError, *more)

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except KeyboardInterrupt:
                click.echo(
                    "interrupted: run the same command again to resume (sealed shards and "
                    "chunks are kept; nothing partial was published)",
                    err=True,
                )
                sys.exit(130)
            except known as e:
                click.echo(f"error: {e}", err=True)
                sys.exit(1)
            except OSError as e:  # disk full, permissions: name the file, skip the traceback
                where = f" {e.filename}" if e.filename else ""
                click.echo(f"error:{where}: {e.strerror or e}", err=True)
                sys.exit(1)

        return wrapper

    return decorate


cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    envvar="PIPE_CACHE",
    show_envvar=True,
    help="Artifact cache root [default: ~/.cache/pipe].",
)


def make_planner(blend_path: Path, memo: HashMemo, **opts: Any) -> Planner:
    """The planner for a blend file; PIPE_DOCS_PER_SHARD / PIPE_DOCS_PER_ROW_GROUP shrink the
    shard layout (tests use them to get many shards from a small corpus) and
    PIPE_SHARD_COMPRESSION compresses the shards (uncompressed by default: stages/download.py)."""
    layout: dict[str, Any] = {
        key: int(os.environ[var])
        for key, var in (
            ("docs_per_shard", "PIPE_DOCS_PER_SHARD"),
            ("docs_per_row_group", "PIPE_DOCS_PER_ROW_GROUP"),
        )
        if os.environ.get(var)
    }
    if compression := os.environ.get("PIPE_SHARD_COMPRESSION"):
        if compression not in SHARD_COMPRESSIONS:
            raise PipeError(
                f"PIPE_SHARD_COMPRESSION={compression}: choose one of "
                f"{', '.join(SHARD_COMPRESSIONS)}"
            )
        layout["compression"] = compression
    return Planner(load_blend(blend_path), Options(layout=layout, **opts), memo)
