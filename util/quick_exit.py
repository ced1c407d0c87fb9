"""Leave a finished command without the interpreter's teardown.

Once megatron-core (torch) is loaded, tearing the interpreter down (module by module, then a
last collection of half a million objects) costs about a second of the command's wall time
and does nothing a finished command needs: pipe's files are closed and synced by then. What
matters is kept: other threads end as at a normal exit (thread pools told to stop, non-daemon
threads joined), exit handlers run (Ray's shutdown, logging's flush), stdout and stderr are
flushed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable


def run_and_exit(command: Callable[[], object]) -> None:
    """Run a click command in standalone mode (it ends in SystemExit) and exit with its code."""
    try:
        command()
        code: object = 0
    except SystemExit as e:
        code = e.code
    threading._shutdown()  # as the interpreter's exit does: executors' exit hooks, then joins
    if not isinstance(code, int):  # sys.exit("message") prints it and means failure
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to tell anyone
            pass
    os._exit(code)
