"""The artifact cache: content-addressed keys, manifests, locks, atomic publish, and `ensure`,
the one path every stage's output takes (reuse it, or lock, build and publish it).

Layout under the cache root:
    <stage>/<key>/            a published artifact; complete iff manifest.json is there
    .work/<key>/              an unfinished build; a resumed run picks up what it holds
    .locks/<key>.lock         held (flock) by the one process building <key>
    .trash/                   old versions being removed after a --force rebuild

A key is a hash of everything that determines the output, so equal keys mean equal artifacts
and any change of input gives a new key. Nothing under .work is ever listed or reused as done.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.artifact import MANIFEST, Artifact, Build, Outcome, Request
from util.errors import PipeError
from util.faults import maybe_die
from util.files import CHECKSUM, DIGESTS, atomic_write_json, file_matches, known_digest, read_json
from util.timing import Stopwatch


def default_root() -> Path:
    """--cache-dir, else $PIPE_CACHE, else $XDG_CACHE_HOME/pipe or ~/.cache/pipe."""
    if os.environ.get("PIPE_CACHE"):
        return Path(os.environ["PIPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pipe"


class Cache:
    """One cache root; every method is safe to call from several processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        try:
            for sub in (".work", ".locks", ".trash"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PipeError(
                f"cache dir {self.root}: cannot create it ({e.strerror}); "
                f"pass --cache-dir or set PIPE_CACHE to a writable folder"
            ) from None
        if not os.access(self.root / ".work", os.W_OK):
            raise PipeError(
                f"cache dir {self.root}: not writable; pass --cache-dir or set "
                f"PIPE_CACHE to a writable folder"
            )

    @classmethod
    def existing(cls, root: Path) -> Cache:
        """A cache that must already exist (for commands that only read or remove)."""
        if not root.expanduser().is_dir():
            raise PipeError(f"no artifact cache at {root} (pass --cache-dir or set PIPE_CACHE)")
        return cls(root)

    def path_of(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Artifact | None:
        """The published artifact with this key, if complete (manifest present and readable)."""
        path = self.path_of(stage, key)
        manifest = read_json(path / MANIFEST)
        if manifest is None or manifest.get("key") != key:
            return None
        return Artifact(key, stage, path, manifest)

    def problems(self, art: Artifact, full: bool = False) -> list[str]:
        """What no longer matches the manifest: missing files, sizes, and (`full`) checksums.

        The size check is a stat per file, cheap enough for every cache hit, and catches the
        usual damage (truncation, a deleted file); `full` re-hashes everything.
        """
        found = []
        for name, want in sorted(art.manifest.get("files", {}).items()):
            path = art.path / name
            try:
                size = path.stat().st_size
            except OSError:
                found.append(f"{name} is missing")
                continue
            if size != want["bytes"]:
                found.append(f"{name} has {size} bytes, the manifest says {want['bytes']}")
            elif full and not file_matches(path, want):
                found.append(f"{name} does not match its checksum")
        return found

    def usable(
        self, stage: str, key: str, say: Callable[[str], None] | None = None
    ) -> Artifact | None:
        """The published artifact if it is whole; a damaged one is reported (when `say` is
        given) and treated as missing, so it is rebuilt instead of being handed to training."""
        art = self.get(stage, key)
        if art is None:
            return None
        if problems := self.problems(art):
            if say:
                say(f"{stage} {key}: damaged in the cache ({'; '.join(problems)}); rebuilding it")
            return None
        return art

    def all(self) -> list[Artifact]:
        found = []
        stage_dirs = (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for stage_dir in sorted(stage_dirs):  # (other files a user left in the root are ignored)
            for path in stage_dir.iterdir():
                art = self.get(stage_dir.name, path.name)
                if art:
                    found.append(art)
        return sorted(found, key=lambda a: a.manifest.get("created", ""))

    def find(self, prefix: str) -> Artifact:
        """The one artifact whose key starts with `prefix`, for `pipe artifacts show/path`."""
        matches = [a for a in self.all() if a.key.startswith(prefix)]
        if not matches:
            raise PipeError(
                f"no artifact with key {prefix!r} in {self.root} (see `pipe artifacts ls`)"
            )
        if len(matches) > 1:
            raise PipeError(
                f"key prefix {prefix!r} is ambiguous: {', '.join(a.key for a in matches)}"
            )
        return matches[0]

    @contextmanager
    def lock(self, key: str, on_wait: Callable[[str], None]) -> Iterator[None]:
        """Exclusive right to build `key`; waits (saying who holds it) if another process does.

        flock is released by the kernel when its holder dies, so a killed run never leaves a
        stale lock behind.
        """
        path = self.root / ".locks" / f"{key}.lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                on_wait(f"waiting for {holder} building {key} ...")
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {os.uname().nodename}")
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)

    def work_dir(self, key: str, fresh: bool) -> Path:
        """Where `key` is built; `fresh` discards what an earlier attempt left there."""
        work = self.root / ".work" / key
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        return work

    def publish(
        self,
        stage: str,
        key: str,
        work: Path,
        *,
        name: str,
        config: dict,
        parents: list[str],
        inputs: Any,
        stats: dict,
    ) -> Artifact:
        """Seal `work` with a manifest (lineage, stats, per-file checksum) and move it into place.

        The rename is the commit point: before it the artifact does not exist, after it it is
        whole. A --force rebuild moves the old version aside first, then deletes it.
        """
        for stray in work.rglob(".*.tmp-*"):  # atomic_write_text leftovers of a killed attempt
            stray.unlink()
        memo = read_json(work / DIGESTS) or {}
        (work / DIGESTS).unlink(missing_ok=True)
        files = {
            str(p.relative_to(work)): {
                CHECKSUM: known_digest(work, str(p.relative_to(work)), memo),
                "bytes": p.stat().st_size,
            }
            for p in sorted(work.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        manifest = {
            "key": key,
            "stage": stage,
            "name": name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "parents": parents,
            "config": config,
            "inputs": inputs,
            "stats": stats,
            "files": files,
        }
        atomic_write_json(work / MANIFEST, manifest)
        maybe_die(f"publish.{stage}")
        final = self.path_of(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            trash = self.root / ".trash" / f"{key}-{time.time_ns()}"
            final.rename(trash)
            work.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            work.rename(final)
        return Artifact(key, stage, final, manifest)

    def ensure(
        self,
        req: Request,
        build: Build,
        *,
        force: bool = False,
        resumable: bool = True,
        say: Callable[[str], None] = print,
        before: Callable[[], None] | None = None,
    ) -> Outcome:
        """The one cache path: usable? -> lock -> usable? (built while we waited) -> work dir ->
        build -> publish. `build(work)` returns stats; stats with "unfinished" set are kept in
        the work folder (a rerun resumes there) and not published. `resumable` stages keep
        what an interrupted attempt left in the work folder; others start it empty. `before`
        runs under the lock, before the clock starts (the caller ensures parents there)."""
        key = req.key
        if not force and (art := self.usable(req.stage, key, say)):
            return _outcome(art, reused=True)
        with self.lock(key, say):
            if not force and (art := self.usable(req.stage, key)):
                return _outcome(art, reused=True)
            if before:  # e.g. ensuring the parents: not part of this build's seconds
                before()
            clock = Stopwatch()
            work = self.work_dir(key, fresh=force or not resumable)
            try:
                stats = build(work)
            except BaseException:
                if not any(work.iterdir()):
                    work.rmdir()  # a failed run leaves no empty folder behind
                raise
            if stats.get("unfinished"):
                return Outcome(req.stage, key, work, stats, False, None, clock.seconds)
            maybe_die(f"{req.stage}.before_publish")
            stats["seconds"] = round(clock.seconds, 3)
            art = self.publish(
                req.stage,
                key,
                work,
                name=req.name,
                config=req.config,
                parents=list(req.parents),
                inputs=req.inputs,
                stats=stats,
            )
            return _outcome(art, reused=False, seconds=clock.seconds)


def _outcome(art: Artifact, reused: bool, seconds: float = 0.0) -> Outcome:
    return Outcome(art.stage, art.key, art.path, art.manifest["stats"], reused, art, seconds)
