"""The run record: config, per-iteration time, throughput, peak memory, train and valid loss.

During training the entry appends one JSON line per event under `<run>/record/` (cheap, and
nothing is lost when Megatron exits through `sys.exit` at an exit interval or a run is killed).
`assemble` turns those lines into `record.json`: a resumed run's lines follow the first run's, and
an iteration done twice keeps its latest line. This module needs no torch.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

RECORD_DIR = "record"
RECORD_FILE = "record.json"
STEPS = "steps.jsonl"
VALID = "valid.jsonl"
META = "meta.jsonl"
MEMORY_GLOB = "memory-rank*.json"
# Steps at the start of each launch that pay for allocation, compilation and warm caches.
WARMUP_STEPS = 3


def append_line(path: Path, obj: dict[str, Any]) -> None:
    """One JSON line, flushed: a reader never sees half of it unless the machine dies."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")
        f.flush()


def write_json(path: Path, obj: Any) -> None:
    """Write beside, then rename: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of `path`; a torn last line (a killed writer) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def latest_per_iteration(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per iteration, the last written winning (a resume redoes lost iterations)."""
    by_iter = {line["iteration"]: line for line in lines}
    return [by_iter[i] for i in sorted(by_iter)]


def steady(steps: list[dict[str, Any]], warmup: int = WARMUP_STEPS) -> list[dict[str, Any]]:
    """Steps without the first `warmup` of each launch (all of a launch if it is that short)."""
    by_launch: dict[int, list[dict[str, Any]]] = {}
    for s in steps:
        by_launch.setdefault(s.get("launch", 0), []).append(s)
    out = []
    for group in by_launch.values():
        out.extend(group[warmup:] if len(group) > warmup else group)
    return sorted(out, key=lambda s: s["iteration"])


def throughput(
    seconds: float, tokens_per_iteration: int, flops_per_iteration: float, world_size: int
) -> dict[str, float]:
    """Tokens/s and model TFLOP/s per GPU for one iteration time."""
    return {
        "tokens_per_second": tokens_per_iteration / seconds,
        "tflops_per_gpu": flops_per_iteration / seconds / world_size / 1e12,
    }


def summarize(
    steps: list[dict[str, Any]],
    valid: list[dict[str, Any]],
    *,
    tokens_per_iteration: int,
    flops_per_iteration: float,
    world_size: int,
    peak_allocated_bytes: int | None,
    peak_reserved_bytes: int | None,
) -> dict[str, Any]:
    """The figures a README quotes: steady s/iteration, tokens/s, TFLOP/s/GPU, memory, losses."""
    summary: dict[str, Any] = {"iterations": steps[-1]["iteration"] if steps else 0}
    timed = steady(steps)
    if timed:
        mean = statistics.fmean(s["seconds"] for s in timed)
        summary |= {
            "timed_iterations": len(timed),
            "seconds_per_iteration": mean,
            "seconds_per_iteration_median": statistics.median(s["seconds"] for s in timed),
            **throughput(mean, tokens_per_iteration, flops_per_iteration, world_size),
        }
    losses = [s for s in steps if s.get("loss") is not None]
    if losses:
        summary |= {"first_loss": losses[0]["loss"], "last_loss": losses[-1]["loss"]}
    if valid:
        summary |= {"last_valid_loss": valid[-1]["loss"], "valid_iteration": valid[-1]["iteration"]}
    gib = 1024**3
    if peak_allocated_bytes is not None:
        summary["peak_memory_allocated_gib"] = peak_allocated_bytes / gib
    if peak_reserved_bytes is not None:
        summary["peak_memory_reserved_gib"] = peak_reserved_bytes / gib
    return summary


def startup_seconds(meta: dict[str, Any], steps: list[dict[str, Any]]) -> float | None:
    """Launch to first iteration: from torchrun's start to the start of the launch's first step.

    That is process start, imports, distributed init, model build, checkpoint load and the
    dataset index build; None for records written before steps carried a wall time.
    """
    first = next((s for s in steps if s.get("launch", 0) == meta.get("launch", 0)), None)
    if first is None or first.get("time") is None or meta.get("launched_at") is None:
        return None
    return first["time"] - first["seconds"] - meta["launched_at"]


def assemble(run_dir: str | Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Build record.json from the event lines of every launch of this run, and write it."""
    folder = Path(run_dir) / RECORD_DIR
    meta_lines = read_lines(folder / META)
    meta = meta_lines[-1] if meta_lines else {}
    steps = latest_per_iteration(read_lines(folder / STEPS))
    valid = latest_per_iteration(read_lines(folder / VALID))
    tokens = int(meta.get("tokens_per_iteration") or plan["tokens_per_iteration"])
    flops = float(meta.get("flops_per_iteration") or 0.0)
    world = int(meta.get("world_size") or plan["world_size"])
    by_launch = {m.get("launch", 0): m for m in meta_lines}
    for s in steps:
        m = by_launch.get(s.get("launch", 0), meta)
        s |= throughput(s["seconds"], tokens, flops, int(m.get("world_size") or world))
    mem = [json.loads(p.read_text()) for p in sorted(folder.glob(MEMORY_GLOB))]
    peak_alloc = max((m["max_allocated_bytes"] for m in mem), default=None)
    peak_res = max((m["max_reserved_bytes"] for m in mem), default=None)
    record = {
        "config": plan,
        "meta": meta,
        "launches": [
            {k: m.get(k) for k in ("launch", "start_iteration", "world_size")}
            | {"startup_seconds": startup_seconds(m, steps)}
            for m in meta_lines
        ],
        "summary": summarize(
            steps,
            valid,
            tokens_per_iteration=tokens,
            flops_per_iteration=flops,
            world_size=world,
            peak_allocated_bytes=peak_alloc,
            peak_reserved_bytes=peak_res,
        ),
        "steps": steps,
        "valid": valid,
        "memory_per_rank": mem,
    }
    write_json(Path(run_dir) / RECORD_FILE, record)
    return record
