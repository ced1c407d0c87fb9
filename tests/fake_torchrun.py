"""Stands in for torchrun in CPU tests of `pipe sweep`: same command line, same files out.

`pipe train` starts `torchrun ... -m training.entry RUN/plan.json`; the tests put this script in
torchrun's place. It reads the plan and writes what the real entry's recorder writes (record
lines through training/record.py, a checkpoint tracker), so pipe assembles a real record.json.
Behaviour, from the environment:
  FAKE_LAUNCHES      file: one JSON line per launch (run dir, resume iteration, micro batch)
  FAKE_GPU_TOKENS    micro batch x sequence above this fails as CUDA out of memory
  FAKE_INTERRUPT_IF  an override text: a first launch with it stops half-way (checkpoint kept)
                     and sends Ctrl-C to pipe, then waits to be terminated
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import record  # noqa: E402
from training.plan import CHECKPOINTS, TRACKER, read_plan  # noqa: E402


def main(argv: list[str]) -> int:
    plan = read_plan(argv[-1])
    run = Path(plan.run_dir)
    start = plan.resume_iteration or 0
    with open(os.environ["FAKE_LAUNCHES"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"run_dir": str(run), "resume": start, "mbs": plan.micro_batch_size}))
        f.write("\n")
    budget = int(os.environ.get("FAKE_GPU_TOKENS", "1000000000"))
    if plan.micro_batch_size * plan.seq_length > budget:
        print("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: training.entry")
        return 1
    stop_early = start == 0 and os.environ.get("FAKE_INTERRUPT_IF") in plan.overrides
    last = plan.train_iters // 2 if stop_early else plan.train_iters
    folder = run / record.RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    launch = len(record.read_lines(folder / record.META))
    launched_at = float(os.environ["PIPE_LAUNCHED_AT"])
    meta = {
        "launch": launch,
        "start_iteration": start,
        "world_size": plan.world_size,
        "tokens_per_iteration": plan.tokens_per_iteration,
        "flops_per_iteration": 1e12,
        "time": time.time(),
        "launched_at": launched_at,
    }
    record.append_line(folder / record.META, meta)
    for it in range(start + 1, last + 1):
        step = {"iteration": it, "launch": launch, "seconds": 0.01 * plan.micro_batch_size}
        record.append_line(folder / record.STEPS, step | {"loss": 10.0 / it, "time": time.time()})
    gib = 1024**3
    memory = {"rank": 0, "max_allocated_bytes": plan.micro_batch_size * gib}
    record.write_json(folder / "memory-rank0.json", memory | {"max_reserved_bytes": 2 * gib})
    (run / CHECKPOINTS).mkdir(exist_ok=True)
    (run / CHECKPOINTS / TRACKER).write_text(str(last))
    if stop_early:
        os.kill(os.getppid(), signal.SIGINT)  # the user's Ctrl-C, as pipe receives it
        time.sleep(60)  # until pipe terminates this launch
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
