"""What `pipe report` reports on: a blend's artifacts, built or not, and the runs trained on it.

From a blend file the planner names every artifact (download -> curate -> tokenize -> blend)
by its key without building anything; the cache says which exist. From artifact keys the
lineage is read back through the manifests' parents. Either way the runs are those whose plan
names the blend as its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.artifact import Artifact
from pipeline.cache import Cache
from pipeline.plan import Planner, Step
from pipeline.runs import Run, cache_runs
from stages import megatron_blend, train
from util.errors import PipeError

ORDER = ("download", "curate", "tokenize", megatron_blend.NAME)


@dataclass(frozen=True)
class Node:
    """One artifact of the lineage; `artifact` is None while it is not built."""

    stage: str
    name: str
    key: str
    parents: tuple[str, ...]
    artifact: Artifact | None

    @property
    def stats(self) -> dict[str, Any]:
        return self.artifact.manifest.get("stats", {}) if self.artifact else {}


@dataclass(frozen=True)
class Lineage:
    title: str
    nodes: list[Node]  # data artifacts, parents before children
    runs: list[Run]

    def of(self, stage: str) -> list[Node]:
        return [n for n in self.nodes if n.stage == stage]

    @property
    def missing(self) -> list[Node]:
        return [n for n in self.nodes if n.artifact is None]


def from_planner(planner: Planner, cache: Cache) -> Lineage:
    """The planned artifacts of a blend file, each looked up (never built) in the cache."""
    blend_step, _ = planner.megatron_blend()
    nodes: dict[str, Node] = {}

    def visit(step: Step | Artifact) -> None:
        if isinstance(step, Artifact) or step.key in nodes:
            return
        for parent in step.parents:
            visit(parent)
        art = cache.usable(step.stage, step.key)
        parents = tuple(p.key for p in step.parents)
        nodes[step.key] = Node(step.stage, step.name, step.key, parents, art)

    visit(blend_step)
    return Lineage(planner.blend.name, _ordered(nodes.values()), _runs_of(cache, nodes))


def from_keys(keys: tuple[str, ...], cache: Cache) -> Lineage:
    """The artifacts named (key prefixes) and all their ancestors; runs named join the runs
    of their blend."""
    by_key = {a.key: a for a in cache.all()}
    nodes: dict[str, Node] = {}
    named_runs: list[str] = []

    def visit(key: str) -> None:
        art = by_key.get(key)
        if art is None:
            raise PipeError(f"artifact {key} is named as a parent but not in {cache.root}")
        if key in nodes:
            return
        parents = tuple(art.manifest.get("parents", []))
        for parent in parents:
            visit(parent)
        nodes[key] = Node(art.stage, str(art.manifest.get("name")), key, parents, art)

    for prefix in keys:
        art = cache.find(prefix)
        visit(art.key)
        if art.stage == train.NAME:
            named_runs.append(art.key)
    data = {k: n for k, n in nodes.items() if n.stage != train.NAME}
    blends = [n.name for n in data.values() if n.stage == megatron_blend.NAME]
    title = ", ".join(blends) or ", ".join(f"{n.stage} {n.name}" for n in data.values())
    runs = _runs_of(cache, data)
    seen = {r.key for r in runs}
    runs += [r for r in cache_runs(cache) if r.key in named_runs and r.key not in seen]
    return Lineage(title, _ordered(data.values()), runs)


def _runs_of(cache: Cache, nodes: dict[str, Node]) -> list[Run]:
    """Runs (published or not) whose plan trains on one of the lineage's blends."""
    blends = {k for k, n in nodes.items() if n.stage == megatron_blend.NAME}
    if not blends or not cache.root.is_dir():
        return []
    return [r for r in cache_runs(cache) if r.config.get("data_artifact") in blends]


def _ordered(nodes: Any) -> list[Node]:
    """Stage by stage (download first), keeping each stage's datasets in blend order."""
    listed = list(nodes)
    return sorted(listed, key=lambda n: ORDER.index(n.stage) if n.stage in ORDER else len(ORDER))
