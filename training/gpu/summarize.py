"""Print the figures of run records (record.json) as a table, for logs and the README.

Usage: python3 training/gpu/summarize.py [--short] RECORD.json [RECORD.json ...]
`--short`: one line per record (what the GPU scripts print after each run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LOSS_AT = (1, 5, 10, 20, 25, 26, 30, 40, 50, 100, 500, 1000, 1001, 1500, 2000)
# The bf16 peak the issue measures MFU against: an 8192^3 bf16 matmul runs at ~790 TFLOP/s on
# the lent H200s (the device notes); the datasheet's dense figure is 989.
MEASURED_PEAK_TFLOPS = 790.0


def short(rec: dict) -> str:
    """One line: speed, MFU against the measured matmul peak, memory, loss, start-up."""
    cfg, s = rec["config"], rec["summary"]
    tf = s.get("tflops_per_gpu", 0.0)
    starts = [x.get("startup_seconds") for x in rec["launches"]]
    return (
        f"{cfg['model']} {cfg['precision']} TP={cfg['tp']} DP={cfg['dp']} "
        f"mbs={cfg['micro_batch_size']} | {s.get('seconds_per_iteration_median', 0):.4f} s/it "
        f"(median) | {s.get('tokens_per_second', 0):,.0f} tok/s | {tf:.1f} TFLOP/s/GPU = "
        f"{100 * tf / MEASURED_PEAK_TFLOPS:.1f}% of 790 | peak "
        f"{s.get('peak_memory_allocated_gib', 0):.2f} GiB alloc, "
        f"{s.get('peak_memory_reserved_gib', 0):.2f} reserved | loss "
        f"{s.get('first_loss', 0):.3f} -> {s.get('last_loss', 0):.3f}, valid "
        f"{s.get('last_valid_loss', 0):.3f} | start-up s {starts}"
    )


def describe(path: Path) -> list[str]:
    rec = json.loads(path.read_text())
    cfg = rec["config"]
    meta = rec.get("meta", {})
    lines = [
        f"## {path.name}: {cfg['model']} ({cfg['num_params'] / 1e9:.3f}B params), "
        f"{cfg['world_size']} GPU(s) TP={cfg['tp']} PP={cfg['pp']} DP={cfg['dp']}, "
        f"{cfg['precision']} {cfg['layer_spec']} layers, seq {cfg['seq_length']}, "
        f"global batch {cfg['global_batch_size']}, gpu {meta.get('gpu')}",
        f"launches: {rec['launches']}",
        short(rec),
        "valid loss " + ", ".join(f"@{v['iteration']}: {v['loss']:.4f}" for v in rec["valid"]),
    ]
    steps = {x["iteration"]: x for x in rec["steps"]}
    at = [f"@{i}: {steps[i]['loss']:.4f}" for i in LOSS_AT if steps.get(i, {}).get("loss")]
    lines.append("train loss " + ", ".join(at))
    return lines


def main(args: list[str]) -> None:
    if args and args[0] == "--short":
        for p in args[1:]:
            print(short(json.loads(Path(p).read_text())))
        return
    for p in args:
        print("\n".join(describe(Path(p))))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
