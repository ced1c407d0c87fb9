"""Print the figures of run records (record.json) as a table, for logs and the README.

Usage: python3 training/gpu/summarize.py RECORD.json [RECORD.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LOSS_AT = (1, 5, 10, 20, 25, 26, 30, 40, 50)


def describe(path: Path) -> list[str]:
    rec = json.loads(path.read_text())
    cfg, s = rec["config"], rec["summary"]
    meta = rec.get("meta", {})
    lines = [
        f"## {path.name}: {cfg['model']} ({cfg['num_params'] / 1e9:.3f}B params), "
        f"{cfg['world_size']} GPU(s) TP={cfg['tp']} PP={cfg['pp']} DP={cfg['dp']}, "
        f"{cfg['precision']} {cfg['layer_spec']} layers, seq {cfg['seq_length']}, "
        f"global batch {cfg['global_batch_size']}, gpu {meta.get('gpu')}",
        f"launches: {[(x['launch'], x['start_iteration']) for x in rec['launches']]} "
        f"(launch, start iteration)",
        f"iterations {s.get('iterations')}; timed {s.get('timed_iterations')} (first 3 of each "
        f"launch left out)",
        f"s/iteration {s.get('seconds_per_iteration', 0):.4f} (median "
        f"{s.get('seconds_per_iteration_median', 0):.4f}); tokens/s "
        f"{s.get('tokens_per_second', 0):,.0f}; TFLOP/s/GPU {s.get('tflops_per_gpu', 0):.1f}; "
        f"peak memory allocated {s.get('peak_memory_allocated_gib', 0):.2f} GiB "
        f"(reserved {s.get('peak_memory_reserved_gib', 0):.2f} GiB)",
        f"train loss {s.get('first_loss')} -> {s.get('last_loss')}; valid loss "
        + ", ".join(f"@{v['iteration']}: {v['loss']:.4f}" for v in rec["valid"]),
    ]
    steps = {x["iteration"]: x for x in rec["steps"]}
    at = [f"@{i}: {steps[i]['loss']:.4f}" for i in LOSS_AT if steps.get(i, {}).get("loss")]
    lines.append("train loss " + ", ".join(at))
    return lines


def main(paths: list[str]) -> None:
    for p in paths:
        print("\n".join(describe(Path(p))))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
