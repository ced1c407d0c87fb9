"""The sweep's record, `<cache>/sweeps/<name>.json`: what ran, how it ended, where each run is.

`pipe runs ls/compare` reads this format: {"sweep", "file", "base", "variants": [{"name",
"variable", "value", "run_key", "run_path", "status": "done"|"failed"|"reused", "reason"}]},
plus `args` (the variant as `pipe train` arguments), `pending` (variants not run yet) and
`updated`. It is rewritten atomically after every variant, so a killed sweep leaves a whole
record of what finished.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.cache import Cache
from pipeline.sweep_file import Sweep, Variant
from training.launch import failure_in_log, last_log
from training.record import RECORD_FILE
from util.files import atomic_write_json, read_json

RECORDS = "sweeps"
DONE, FAILED, REUSED = "done", "failed", "reused"


def record_path(cache: Cache, name: str) -> Path:
    return cache.root / RECORDS / f"{name}.json"


def entry(
    variant: Variant, run_key: str | None, status: str, reason: str | None, run_path: Path | None
) -> dict[str, Any]:
    """One variant's line in the record."""
    return {
        "name": variant.name,
        "variable": variant.variable,
        "value": variant.value,
        "run_key": run_key,
        "run_path": str(run_path) if run_path else None,
        "status": status,
        "reason": reason,
        "args": variant.launch.args(),
    }


def failure_reason(message: str, work: Path) -> str:
    """Why a launch failed: the error its last log names (training/launch.py), then what
    the train stage said (exit code), then where the log is."""
    what = message.split(";")[0]
    log = last_log(work)
    if log is None:
        return what
    cause = failure_in_log(work)
    return f"{cause + '; ' if cause else ''}{what} (log: {log})"


def previous_entries(cache: Cache, name: str) -> dict[str, dict]:
    """The entries an earlier run of this sweep recorded, by variant name."""
    record = read_json(record_path(cache, name)) or {}
    return {e["name"]: e for e in record.get("variants", []) if isinstance(e, dict)}


def write_record(
    cache: Cache, sweep: Sweep, blend: Path | None, entries: dict[str, dict]
) -> dict[str, Any]:
    """The record of `entries`, in the sweep file's order; variants without one are pending."""
    names = [v.name for v in sweep.variants]
    base = sweep.base
    record = {
        "sweep": sweep.name,
        "file": str(sweep.path),
        "base": {
            "model": base.model,
            "nproc_per_node": base.nproc_per_node,
            "tp": base.tp,
            "pp": base.pp,
            "precision": base.precision,
            "overrides": list(base.overrides),
            "blend": None if sweep.mock else str(blend),
            "mock": sweep.mock,
        },
        "variants": [entries[n] for n in names if n in entries],
        "pending": [n for n in names if n not in entries],
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = record_path(cache, sweep.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return record


def measured(run_path: str | None) -> dict[str, Any]:
    """The run record's summary (s/iteration, tokens/s, peak memory), if the run has one."""
    if not run_path:
        return {}
    return (read_json(Path(run_path) / RECORD_FILE) or {}).get("summary", {})
