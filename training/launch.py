"""Start torchrun for a placed plan and keep its output: on stderr, and in the run's logs folder.

stdout stays free for `pipe train --json`; the log file keeps every launch of a run (a resumed
run appends a new file), so a failure can be read after the terminal is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from training.plan import TrainPlan

LOGS = "logs"
# Wall time at which torchrun was started; the entry records it (start-up overhead).
LAUNCHED_AT = "PIPE_LAUNCHED_AT"


def launch_env(plan: TrainPlan) -> dict[str, str]:
    """This environment plus the plan's defaults (the caller's values win), with pipe on the
    path so `python -m training.entry` imports in every rank."""
    env = dict(os.environ)
    for key, value in plan.env.items():
        env.setdefault(key, value)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def next_log(run_dir: Path) -> Path:
    folder = run_dir / LOGS
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("launch-*.log")))
    return folder / f"launch-{n}.log"


def launch(plan: TrainPlan) -> tuple[int, Path]:
    """Run the torchrun command to completion; returns its exit code and the log path."""
    log_path = next_log(Path(plan.run_dir))
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(plan.torchrun) + "\n")
        env = launch_env(plan) | {LAUNCHED_AT: repr(time.time())}
        proc = subprocess.Popen(
            plan.torchrun,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stderr.write(line)
                log.write(line)
        except KeyboardInterrupt:
            proc.terminate()  # torchrun forwards it to the ranks and waits for them
        return proc.wait(), log_path
