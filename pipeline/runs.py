"""Training runs as `pipe runs` and `pipe report` see them: found by key, folder, record or sweep.

A run is a train artifact (published when it reached its iterations) or a work folder under
`.work/` (running, stopped early, or failed). Its figures come from its own `record.json`
(training/record.py); a run that failed is kept with the reason, read from its last launch log
or from the sweep that ran it, so comparisons show it instead of dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifact import MANIFEST
from pipeline.cache import Cache
from pipeline.housekeeping import is_locked
from stages import train
from training.launch import failure_in_log
from training.plan import PLAN_FILE
from training.record import RECORD_FILE
from util.errors import PipeError
from util.files import read_json

SWEEPS = "sweeps"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Run:
    """One training run and what is known of it; `record` is None when it never recorded."""

    label: str
    status: str  # done | running | unfinished | failed
    key: str | None = None
    path: Path | None = None
    record: dict[str, Any] | None = None
    reason: str | None = None
    name: str | None = None
    created: str | None = None
    checkpoint_bytes: int | None = None
    plan: dict[str, Any] = field(default_factory=dict)  # plan.json: settings before any record
    sweep: dict[str, Any] = field(default_factory=dict)  # the sweep variant it came from

    @property
    def config(self) -> dict[str, Any]:
        return (self.record or {}).get("config") or self.plan

    @property
    def summary(self) -> dict[str, Any]:
        return (self.record or {}).get("summary") or {}


def cache_runs(cache: Cache) -> list[Run]:
    """Every run the cache holds: published train artifacts, then work folders of runs."""
    published = [from_folder(a.path, cache) for a in cache.all() if a.stage == train.NAME]
    work = sorted(p for p in (cache.root / ".work").iterdir() if (p / PLAN_FILE).is_file())
    return published + [from_folder(p, cache) for p in work]


def from_folder(folder: Path, cache: Cache | None = None, label: str | None = None) -> Run:
    """A run folder, published or not; `cache` (when known) tells a running build by its lock."""
    folder = folder.resolve()
    manifest = read_json(folder / MANIFEST)
    record = read_json(folder / RECORD_FILE)
    key = manifest["key"] if manifest else folder.name
    done = bool(manifest) and manifest.get("stage") == train.NAME
    status, reason = ("done", None) if done else _work_status(folder, record, cache)
    return Run(
        label=label or _label(manifest, key),
        status=status,
        key=key,
        path=folder,
        record=record,
        reason=reason,
        name=manifest.get("name") if manifest else None,
        created=manifest.get("created") if manifest else None,
        checkpoint_bytes=checkpoint_bytes(folder),
        plan=read_json(folder / PLAN_FILE) or {},
    )


def from_record(path: Path) -> Run:
    """A bare record.json (e.g. one kept from a GPU run): its figures, no folder around it."""
    if path.parent.joinpath(MANIFEST).is_file() or path.parent.joinpath(PLAN_FILE).is_file():
        return from_folder(path.parent)
    record = read_json(path)
    if record is None or "summary" not in record:
        raise PipeError(f"{path}: not a run record (record.json with a 'summary')")
    return Run(label=path.stem.removesuffix("_record"), status="done", record=record)


def checkpoint_bytes(folder: Path) -> int | None:
    """Bytes of the run's latest checkpoint (iter_* folder), None when it saved none."""
    iters = sorted((folder / CHECKPOINTS).glob("iter_*"))
    if not iters:
        return None
    return sum(p.stat().st_size for p in iters[-1].rglob("*") if p.is_file())


def resolve(what: str, cache_root: Path) -> list[Run]:
    """RUN as `pipe runs compare` takes it: a record.json, a run folder, a sweep file, a sweep
    name, or a run key (a prefix is enough)."""
    path = Path(what).expanduser()
    if path.is_file():
        data = read_json(path)
        if data is not None and "variants" in data:
            return from_sweep(data, path, cache_root)
        return [from_record(path)]
    if path.is_dir():
        if not (path / RECORD_FILE).is_file() and not (path / PLAN_FILE).is_file():
            raise PipeError(f"{path}: not a run folder (no {RECORD_FILE} or {PLAN_FILE})")
        return [from_folder(path)]
    sweep = cache_root.expanduser() / SWEEPS / f"{what}.json"
    if sweep.is_file():
        return from_sweep(read_json(sweep) or {}, sweep, cache_root)
    return [find(what, Cache.existing(cache_root))]


def find(prefix: str, cache: Cache) -> Run:
    """The one run whose key starts with `prefix`, published or in the work area."""
    matches = [r for r in cache_runs(cache) if r.key and r.key.startswith(prefix)]
    if not matches:
        raise PipeError(
            f"no run {prefix!r}: not a file, a folder, a sweep in {cache.root / SWEEPS} or a "
            f"run key in {cache.root} (see `pipe runs ls`)"
        )
    if len(matches) > 1:
        raise PipeError(f"run key {prefix!r} is ambiguous: {', '.join(r.key for r in matches)}")
    return matches[0]


def from_sweep(data: dict[str, Any], path: Path, cache_root: Path) -> list[Run]:
    """One run per sweep variant, labelled by the variant; a variant that failed before its run
    made a folder is a row with the sweep's reason. A sweep record brought back from the GPU
    host (training/gpu/sweep.sh) has its runs' records beside it, as `<variant>_record.json`,
    while its run paths name folders on that host."""
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        raise PipeError(f"{path}: a sweep file lists its runs under 'variants'; none found")
    runs = []
    for v in variants:
        label = str(v.get("name") or v.get("run_key") or f"variant {len(runs) + 1}")
        folder = Path(v["run_path"]) if v.get("run_path") else None
        if folder is None and v.get("run_key"):
            folder = _folder_of(v["run_key"], cache_root)
        beside = path.parent / f"{label}_record.json"
        if folder is not None and folder.is_dir():
            run = from_folder(folder, label=label)
        elif v.get("run_key") and beside.is_file():
            run = _replace(from_record(beside), label=label, key=v["run_key"])
        else:
            run = Run(label=label, status="failed", key=v.get("run_key"), reason="no run folder")
        if v.get("status") == "failed":
            reason = v.get("reason") or run.reason or "failed (the sweep gives no reason)"
            run = _replace(run, status="failed", reason=reason)
        runs.append(_replace(run, sweep=v))
    return runs


def _folder_of(key: str, cache_root: Path) -> Path | None:
    for folder in (cache_root / train.NAME / key, cache_root / ".work" / key):
        if folder.is_dir():
            return folder
    return None


def _replace(run: Run, **changes: Any) -> Run:
    return Run(**(vars(run) | changes))


def _label(manifest: dict[str, Any] | None, key: str) -> str:
    name = manifest.get("name") if manifest else None
    return f"{name} {key[:8]}" if name else key[:12]


def _work_status(
    folder: Path, record: dict[str, Any] | None, cache: Cache | None
) -> tuple[str, str | None]:
    """running (its build lock is held), failed (its last log names an error) or unfinished."""
    if cache is not None and is_locked(cache, folder.name):
        return "running", None
    if error := failure_in_log(folder):
        return "failed", error
    plan = read_json(folder / PLAN_FILE) or {}
    done = ((record or {}).get("summary") or {}).get("iterations", 0)
    target = plan.get("train_iters", "?")
    return "unfinished", f"stopped at iteration {done} of {target}; run it again to resume"
