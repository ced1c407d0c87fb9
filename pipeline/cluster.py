"""Ray start and stop: an embedded local cluster sized to the machine, or an existing one.

Only what this process started is stopped (`ray.shutdown()` of our own `ray.init`); we never
run `ray stop`, which would kill every Ray process on the machine, other users' included.
"""

from __future__ import annotations

import logging
import os
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
    started = not ray.is_initialized()
    if started:
        if address:
            import stages

            ray.init(
                address=address,
                logging_level=logging.WARNING,
                runtime_env={"py_modules": [str(Path(stages.__file__).parent)]},
            )
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                logging_level=logging.WARNING,
                object_store_memory=128 << 20,
            )
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def unwrap(error: BaseException) -> BaseException:
    """The exception a Ray task raised, without Ray's wrapper (so InputError stays one line)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error
