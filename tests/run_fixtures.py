"""Training runs in a test cache, made from real run records kept from GPU runs.

No GPU trains here: a run's folder is given a recorded `record.json` (tests/fixtures/runs/,
copies of training/gpu/results/) and published through the cache's own publish, as the train
stage publishes a finished run; unfinished and failed runs stay in `.work/` as they do.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.cache import Cache

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs"
RECORDS = {
    "mbs2": FIXTURES / "h200x2_te_1b_mbs2_record.json",
    "mbs4": FIXTURES / "h200x2_te_1b_mbs4_record.json",
    "fp8": FIXTURES / "h200x2_te_1b_fp8_mbs4_record.json",
    "tiny": FIXTURES / "h200x1_tiny_record.json",
}


def record(name: str, data_artifact: str | None = None) -> dict:
    rec = json.loads(RECORDS[name].read_text())
    if data_artifact:
        rec["config"]["data_artifact"] = data_artifact
    return rec


def run_folder(folder: Path, rec: dict, log: str | None = None, ckpt_bytes: int = 0) -> Path:
    """A run folder as training leaves it: plan.json, record.json, a launch log, a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(rec["config"]))
    (folder / "record.json").write_text(json.dumps(rec))
    if log is not None:
        (folder / "logs").mkdir(exist_ok=True)
        (folder / "logs" / "launch-0.log").write_text(log)
    if ckpt_bytes:
        ckpt = folder / "checkpoints" / f"iter_{rec['summary']['iterations']:07d}"
        ckpt.mkdir(parents=True)
        (ckpt / "__0_0.distcp").write_bytes(b"\0" * ckpt_bytes)
    return folder


def publish_run(cache_root: Path, key: str, rec: dict, parents: list[str], **kw: int) -> Path:
    """A finished run, published as `train/<key>` with its blend as parent."""
    cache = Cache(cache_root)
    work = run_folder(cache.root / ".work" / key, rec, **kw)
    art = cache.publish(
        "train",
        key,
        work,
        name=f"{rec['config']['model']}-test",
        config={"plan": rec["config"]},
        parents=parents,
        inputs=None,
        stats=rec["summary"],
    )
    return art.path


def work_run(cache_root: Path, key: str, rec: dict, log: str | None = None) -> Path:
    """An unpublished run (stopped early, or failed when `log` holds a traceback)."""
    return run_folder(Cache(cache_root).root / ".work" / key, rec, log=log)
