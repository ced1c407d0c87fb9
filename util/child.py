"""Run one function in a process of its own, with its progress and errors brought back.

Why: the download parses and writes on the interpreter lock, and while it runs the driver
imports megatron-core and loads the tokenizer engine on another thread, which want that lock
too: side by side in one process the download ran twice as slow. A process of its own has its
own lock. A fresh interpreter, not a fork (forking while another thread imports can deadlock
the child) and not multiprocessing's spawn, which imports the caller's main script again.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

from util import faults
from util.errors import PipeError

_START = "import sys, util.child as c; c._serve(int(sys.argv[1]))"


def call_in_child[R](
    fn: Callable[..., R], args: tuple, on_progress: Callable[..., None], what: str
) -> R:
    """`fn(*args, on_progress=...)` in a new process; `on_progress` is called here with the
    child's arguments, in order. The child's error is raised here; a Ctrl-C here stops it. The
    counts of test crash points carry over both ways, so a point counts across processes."""
    ours, theirs = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", _START, str(theirs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,  # the caller's stdout may carry `--json` output: not the child's
        pass_fds=(theirs,),
    )
    os.close(theirs)  # so that a dead child reads as EOF here
    messages = Connection(ours, writable=False)
    try:
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(pickle.dumps((fn, args, faults.counts(), what)))
        while True:
            try:
                kind, *payload = messages.recv()
            except EOFError:
                raise PipeError(f"the {what} process died (exit code {child.wait()})") from None
            if kind == "progress":
                on_progress(*payload[0])
            elif kind == "error":
                raise payload[0]
            else:
                result, counts = payload
                faults.carry(counts)
                return result
    finally:
        messages.close()
        if child.poll() is None:
            child.terminate()
        child.wait()


def _serve(fd: int) -> None:
    """The child's side: read the call from stdin, send progress and the outcome on `fd`."""
    out = Connection(fd, readable=False)
    try:
        fn, args, counts, what = pickle.load(sys.stdin.buffer)
        faults.carry(counts)
        result = fn(*args, on_progress=lambda *a: out.send(("progress", a)))
    except KeyboardInterrupt:  # the parent had the same Ctrl-C and says what to do
        return
    except BaseException as error:  # noqa: BLE001  (raised again in the parent)
        if not isinstance(error, PipeError):
            error.add_note(f"(in the {what} process)\n{traceback.format_exc()}")
        try:
            out.send(("error", error))
        except Exception:  # (an error that does not pickle goes as its text)
            out.send(("error", PipeError(f"{type(error).__name__}: {error}")))
        return
    out.send(("done", result, faults.counts()))
