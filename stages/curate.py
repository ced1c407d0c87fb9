"""Curate stage: one dataset's download shards -> filtered, deduplicated shards (same schema).

Config (what keys it): dataset and its normalised `curate` settings; parent: the download.
The Curator pipeline itself is in stages/curator.py, imported only when a build runs. It runs
on the command's Ray cluster: one started here, or with `--ray-address` one that pipe joins
(every node is first asked whether it can import what the tasks need, util/nodes.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from stages.base import Context
from util.errors import PipeError
from util.nodes import check_nodes

NAME = "curate"
VERSION = 1
RESUMABLE = False  # a partial curate is redone whole
COLUMNS = ("dataset", "step", "status", "docs", "chars", "docs %", "seconds")


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    (download,) = parents
    name = config["dataset"]
    _quiet_curator_logs()
    ray = ctx.ray()  # Curator's executor runs on the command's cluster
    if ctx.ray_address not in (None, "local"):  # joined: its nodes may lack what tasks import
        check_nodes(ray, _worker_needs())
    from stages import curator  # imports NeMo Curator and Ray: only once the cluster is up

    ctx.say(f"curate {name}: {download.manifest['stats']['docs']:,} documents")
    files = sorted(download.path.glob("*.parquet"))
    stats = curator.curate(files, work, name, config["curate"], progress=ctx.show_progress)
    if stats["docs"] == 0:
        raise PipeError(
            f"dataset {name!r}: curation removed every document; loosen its "
            f"'curate' filters in {config.get('blend_file', 'the blend file')}"
        )
    return stats


def _worker_needs() -> dict[str, str | None]:
    """What a node must import to run curate tasks: pipe's shipped code and the driver's NeMo
    Curator version (its filters decide what is kept: one artifact, one set of rules)."""
    return {
        "nemo_curator": version("nemo_curator"),
        "pandas": None,
        "pyarrow": None,
        "stages.curator": None,
    }


def rows(name: str, s: dict[str, Any], status: str) -> Iterator[tuple]:
    yield (name, "input", status, s["docs_in"], s["chars_in"], "", "")
    for step in s["removed"]:
        docs_pct = f"{100 * step['docs'] / max(1, s['docs_in']):.1f}%"
        yield (name, step["step"], status, -step["docs"], -step["chars"], docs_pct, "")
    yield (name, "kept", status, s["docs"], s["chars"], "", s.get("seconds", 0.0))


def _quiet_curator_logs() -> None:
    """NeMo Curator logs every stage at INFO; keep only warnings (call before importing it).

    Its loguru setup (cosmos-xenna's) reads PYTHON_LOG when imported, here and in Ray workers.
    """
    os.environ.setdefault("PYTHON_LOG", "warning")
