"""pipe train against bare Megatron-Bridge: s/iteration from Megatron's own log lines of each.

Both logs carry Megatron's `elapsed time per iteration (ms)` for every iteration (log_interval
1), so one parser measures both the same way. The first 3 iterations and those that include an
evaluation (the next one after each eval) are left out; the median of the rest is compared.

Usage: python3 training/gpu/compare_bare.py BARE_LOG PIPE_LOG [EVAL_INTERVAL] > comparison.json
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

LINE = re.compile(
    r"iteration\s+(\d+)/\s*\d+ \|.*?elapsed time per iteration \(ms\): ([\d.]+)"
    r"(?:.*?throughput per GPU \(TFLOP/s/GPU\): ([\d.]+))?"
)
WARMUP = 3


def iteration_ms(log: str) -> dict[int, tuple[float, float | None]]:
    """{iteration: (ms, TFLOP/s/GPU or None)} from a Megatron training log."""
    out: dict[int, tuple[float, float | None]] = {}
    for m in LINE.finditer(log):
        out[int(m.group(1))] = (float(m.group(2)), float(m.group(3)) if m.group(3) else None)
    return out


def steady(times: dict[int, tuple[float, float | None]], eval_interval: int) -> list[int]:
    """Iterations past warm-up whose interval holds no evaluation."""
    return [i for i in sorted(times) if i > WARMUP and (i - 1) % eval_interval != 0]


def summary(log: str, eval_interval: int) -> dict[str, float | int]:
    times = iteration_ms(log)
    kept = steady(times, eval_interval)
    if not kept:
        raise SystemExit("no timed iterations in the log")
    tflops = [times[i][1] for i in kept if times[i][1] is not None]
    return {
        "iterations_logged": len(times),
        "iterations_timed": len(kept),
        "seconds_per_iteration_median": statistics.median(times[i][0] for i in kept) / 1000,
        "seconds_per_iteration_mean": statistics.fmean(times[i][0] for i in kept) / 1000,
        "tflops_per_gpu_median": statistics.median(tflops) if tflops else 0.0,
    }


def compare(bare_log: str, pipe_log: str, eval_interval: int) -> dict[str, object]:
    bare, pipe = summary(bare_log, eval_interval), summary(pipe_log, eval_interval)
    ratio = pipe["seconds_per_iteration_median"] / bare["seconds_per_iteration_median"]
    return {"bare_bridge": bare, "pipe_train": pipe, "pipe_over_bare": ratio}


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    interval = int(sys.argv[3]) if len(sys.argv) == 4 else 15
    result = compare(Path(sys.argv[1]).read_text(), Path(sys.argv[2]).read_text(), interval)
    print(json.dumps(result, indent=2))
