"""Start torchrun for a placed plan and keep its output: on stderr, and in the run's logs folder.

stdout stays free for `pipe train --json`; the log file keeps every launch of a run (a resumed
run appends a new file), so a failure can be read after the terminal is gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from training.plan import TrainPlan

LOGS = "logs"
# Wall time at which torchrun was started; the entry records it (start-up overhead).
LAUNCHED_AT = "PIPE_LAUNCHED_AT"
# A launch failed when its log holds a traceback (or torchrun's ChildFailedError). Its reason is
# an out-of-memory line if any (later errors on other ranks follow from it), else the last line
# naming an exception; torchrun's own ChildFailedError only when no rank said more.
_FAILED = ("Traceback (most recent call last)", "ChildFailedError")
_ERROR_LINE = re.compile(r"\b[\w.]*(Error|Exception)\b:")
_OOM = re.compile(r"out of memory|OutOfMemoryError", re.IGNORECASE)
_WRAPPER = "ChildFailedError"


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


def last_log(run_dir: Path) -> Path | None:
    """The log of the run's latest launch (launch-N.log, N counting from 0), if any."""
    logs = (run_dir / LOGS).glob("launch-*.log")
    return max(logs, key=lambda p: int(p.stem.split("-")[-1]), default=None)


def failure_in_log(run_dir: Path) -> str | None:
    """Why the run's last launch failed, read from its log; None when it shows no failure.
    `pipe runs` and `pipe sweep` both give this as a failed run's reason."""
    log = last_log(run_dir)
    if log is None:
        return None
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-400:]
    if not any(marker in line for line in lines for marker in _FAILED):
        return None
    errors = [line.strip() for line in lines if _ERROR_LINE.search(line)]
    oom = [e for e in errors if _OOM.search(e)]
    named = [e for e in errors if _WRAPPER not in e]
    return (oom or named or errors or [f"see {log}"])[-1][:300]


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
