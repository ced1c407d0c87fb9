"""The nodes of a Ray cluster that pipe joined (`--ray-address`): can each run pipe's tasks, and
which ones were lost mid-run.

Tasks run in whatever Python each node's raylet was started with. pipe ships its own code
(runtime_env py_modules: `stages/`, `util/`) but not the packages below it, so before the first
task every live node is asked what it has, and a node that lacks one is refused in one line that
says what to install there. This module is shipped too and imports only the standard library,
so the question can be asked of a node that has nothing else.
"""

from __future__ import annotations

import importlib
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from util.errors import PipeError


def what_is_here(modules: list[str]) -> dict[str, Any]:
    """On a node: this Python, and the version of each module (None: cannot be imported)."""
    found: dict[str, str | None] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            found[name] = None
            continue
        try:
            found[name] = version(name.split(".")[0])
        except PackageNotFoundError:  # shipped by pipe, not installed
            found[name] = "shipped"
    return {"python": sys.executable, "modules": found}


def describe(node: dict[str, Any]) -> str:
    return f"{node['NodeManagerAddress']} (node id {node['NodeID'][:12]})"


def check_nodes(ray: Any, need: dict[str, str | None]) -> list[dict[str, Any]]:
    """Refuse unless every live node imports each module of `need` at the version given (None:
    any version; the tokenizer libraries must match the driver's, they are in the cache key).
    Returns the nodes that answered."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(what_is_here)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    asks = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(list(need))
        for n in nodes
    ]
    for node, ask in zip(nodes, asks, strict=True):
        try:
            here = ray.get(ask, timeout=120)
        except Exception as e:  # noqa: BLE001 - Ray's own errors, shown in one line
            raise PipeError(f"Ray node {describe(node)} did not answer: {_first_line(e)}") from None
        bad = [
            f"{name}=={want}" if want else name
            for name, want in need.items()
            if here["modules"][name] is None or (want and here["modules"][name] != want)
        ]
        if bad:
            # pipe's shipped modules import the packages: name a missing package, not them
            packages = [b for b in bad if not b.startswith(("stages.", "util."))]
            fix = (
                f"install there: pip install {' '.join(packages)}"
                if packages
                else "pipe's own code did not reach it (runtime_env py_modules)"
            )
            raise PipeError(
                f"Ray node {describe(node)} cannot run pipe's tasks: its Python "
                f"({here['python']}) lacks {', '.join(packages or bad)}; {fix}"
            )
    return nodes


def lost_nodes(ray: Any, known: list[dict[str, Any]], wait_s: float = 60.0) -> str:
    """Which of `known` the cluster now reports dead (it may take Ray a while to notice)."""
    ids = {n["NodeID"] for n in known}
    deadline = time.monotonic() + wait_s
    while True:
        dead = [n for n in ray.nodes() if n["NodeID"] in ids and not n["Alive"]]
        if dead or time.monotonic() > deadline:
            return ", ".join(map(describe, dead)) or "a node Ray did not name"
        time.sleep(1)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
