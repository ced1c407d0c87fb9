"""Test-only crash points: SIGKILL the whole `pipe` run at a named place, on its n-th hit.

Crash safety cannot be shown by reading code; tests set `PIPE_KILL_AT="<point>:<n>"` and the
run dies exactly there, as it would on a power cut or OOM kill, then a second run must resume to
the same bytes. Unset (always, outside tests), `maybe_die` is one dict lookup.

The signal goes to the process group of the `pipe` process (remembered in PIPE_KILL_PGID when
the driver first looks, and inherited by Ray workers), so a point hit inside a Ray worker takes
the driver and its Ray daemons down with it, like a real kill of the job.
`PIPE_PAUSE_AT="<point>:<seconds>"` sleeps at a point instead, so that a test can act while
work is in flight there (tests/test_cluster.py kills a Ray node mid-chunk).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "PIPE_KILL_AT"
PAUSE_ENV = "PIPE_PAUSE_AT"  # "<point>:<seconds>": sleep there, so a test can act mid-run
_hits: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    point, _, n = spec.rpartition(":")
    return point, int(n)


def maybe_die(point: str, hits: int = 1) -> None:
    """SIGKILL this run's process group if `point` is the armed one and its n-th hit is among
    these `hits` (a batch of documents counts one hit per document)."""
    if pause := os.environ.get(PAUSE_ENV):
        where, _, seconds = pause.rpartition(":")
        if where == point:
            time.sleep(float(seconds))
    target = _target()
    if target is None or target[0] != point:
        return
    before = _hits.get(point, 0)
    _hits[point] = before + hits
    if before < target[1] <= _hits[point]:
        pgid = int(os.environ.get("PIPE_KILL_PGID") or os.getpgrp())
        os.killpg(pgid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)  # (a child of its own group, util/child.py)


def counts() -> dict[str, int]:
    """How often each point was hit in this process, to hand to a child process."""
    return dict(_hits)


def carry(hits: dict[str, int]) -> None:
    """Take the counts of the process that ran the work before (util/child.py)."""
    _hits.clear()
    _hits.update(hits)


def arm() -> None:
    """Record the driver's process group so that workers started later kill the same group."""
    if os.environ.get(ENV):
        os.environ.setdefault("PIPE_KILL_PGID", str(os.getpgrp()))
