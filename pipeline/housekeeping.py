"""Removing what the cache no longer needs: one artifact, stale work folders, orphans.

Nothing here touches a build in progress: a work folder whose lock is held is skipped, and an
artifact that another published artifact names as a parent is kept unless the caller removes
its children first.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifact import Artifact
from pipeline.cache import Cache
from util.errors import PipeError

# Final outputs: a blend.json or a training run is what a user asked for, never an orphan.
FINAL_STAGES = ("megatron_blend", "train")


@dataclass(frozen=True)
class Removal:
    path: Path
    why: str
    bytes: int


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def children(cache: Cache, key: str) -> list[Artifact]:
    return [a for a in cache.all() if key in a.manifest.get("parents", [])]


def removal_of(cache: Cache, art: Artifact) -> Removal:
    """What `pipe artifacts rm` would remove; refused while children name it as a parent."""
    if kids := children(cache, art.key):
        names = ", ".join(f"{a.stage} {a.key}" for a in kids)
        raise PipeError(f"{art.stage} {art.key} is a parent of {names}; remove those first")
    return Removal(art.path, f"{art.stage} {art.manifest.get('name')}", size_of(art.path))


def stale_work(cache: Cache, older_than_hours: float) -> list[Removal]:
    """Unpublished work folders untouched for longer than the limit and not being built."""
    cutoff = time.time() - older_than_hours * 3600
    found = []
    for work in sorted((cache.root / ".work").iterdir()):
        newest = max([p.stat().st_mtime for p in work.rglob("*")] + [work.stat().st_mtime])
        if newest < cutoff and not is_locked(cache, work.name):
            found.append(Removal(work, "unpublished work", size_of(work)))
    return found


def orphans(cache: Cache) -> list[Removal]:
    """Intermediate artifacts (download, curate, tokenize) that no published artifact names
    as a parent, e.g. left behind when a blend file or tokenizer changed."""
    everything = cache.all()
    named = {p for a in everything for p in a.manifest.get("parents", [])}
    return [
        Removal(a.path, f"unreferenced {a.stage} {a.manifest.get('name')}", size_of(a.path))
        for a in everything
        if a.stage not in FINAL_STAGES and a.key not in named
    ]


def remove(found: list[Removal]) -> None:
    for r in found:
        shutil.rmtree(r.path)


def is_locked(cache: Cache, key: str) -> bool:
    """Whether a process holds `key`'s build lock now (it is being built)."""
    path = cache.root / ".locks" / f"{key}.lock"
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
