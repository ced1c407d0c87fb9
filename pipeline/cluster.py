"""Ray start and stop: an embedded local cluster sized to the machine, or an existing one.

Only what this process started is stopped (`ray.shutdown()` of our own `ray.init`); we never
run `ray stop`, which would kill every Ray process on the machine, other users' included.

If the driver is SIGKILLed, ray.init's daemons die with it (kernel fate-sharing), but the two
agents raylet starts (ray::DashboardAgent, ray::RuntimeEnvAgent) linger for about a minute
trying to report to the dead GCS. Every process of a local cluster carries PIPE_RAY_OWNER (the
driver's pid and start time) in its environment, so the next local start finds and ends the
ones whose owner is gone, and nothing else.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def ray_cluster(address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """Yield the `ray` module with a connected cluster; shut down only what we started."""
    # Ray 2.60 turns on token auth once a token file exists; a private local cluster needs none.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Under `uv run`, Ray would otherwise build a fresh venv for every worker from the project.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    address = None if address == "local" else address
    started = not ray.is_initialized()
    if started:
        if address:
            import stages
            import util

            # Workers import the stages and the helpers below them; ship both.
            modules = [str(Path(m.__file__).parent) for m in (stages, util)]
            ray.init(
                address=address,
                logging_level=logging.WARNING,
                runtime_env={"py_modules": modules},
            )
        else:
            reap_orphans()
            os.environ[OWNER_ENV] = _owner_tag(os.getpid()) or ""
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                logging_level=logging.WARNING,
                object_store_memory=128 << 20,
            )
    session = _session_dir(ray) if started and not address else None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
        if session:  # logs and sockets of a cluster we started and stopped: ours to remove
            shutil.rmtree(session, ignore_errors=True)


def _session_dir(ray: Any) -> Path | None:
    try:
        return Path(ray._private.worker._global_node.get_session_dir_path())
    except AttributeError:  # a Ray without this private accessor: leave the folder
        return None


OWNER_ENV = "PIPE_RAY_OWNER"


def _owner_tag(pid: int) -> str | None:
    """pid:start-time of a live process (the start time tells a reused pid apart), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"


def reap_orphans() -> list[int]:
    """SIGKILL Ray processes a killed pipe driver left behind (found by PIPE_RAY_OWNER in their
    environment, readable only for our own processes); returns their pids."""
    reaped = []
    proc = Path("/proc")
    if not proc.is_dir():
        return reaped
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(OWNER_ENV.encode() + b"="):
                owner = item.split(b"=", 1)[1].decode()
                if owner and _owner_tag(int(owner.split(":")[0])) != owner:
                    try:
                        os.kill(int(entry.name), signal.SIGKILL)
                        reaped.append(int(entry.name))
                    except OSError:
                        pass
                break
    if reaped:
        print(
            f"pipe: ended {len(reaped)} Ray processes left by a killed earlier run "
            f"(pids {' '.join(map(str, reaped))})",
            file=sys.stderr,
        )
    return reaped
