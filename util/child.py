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
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

from util import faults
from util.arrow_memory import use_jemalloc
from util.errors import PipeError

# os._exit: no interpreter teardown, which would wait on stdin's lock, held by the thread
# that watches it (_end_with_caller)
_START = "import os, sys, util.child as c; c._serve(int(sys.argv[1])); os._exit(0)"


def call_in_child[R](
    fn: Callable[..., R], args: tuple, on_progress: Callable[..., None], what: str
) -> R:
    """`fn(*args, on_progress=...)` in a new process; `on_progress` is called here with the
    child's arguments, in order. The child's error is raised here; a Ctrl-C here stops it. The
    counts of test crash points carry over both ways, so a point counts across processes."""
    ours, theirs = os.pipe()
    child = _start(theirs)
    os.close(theirs)  # so that a dead child reads as EOF here
    messages = Connection(ours, writable=False)
    try:
        assert child.stdin is not None
        try:
            child.stdin.write(pickle.dumps((fn, args, faults.counts(), what)))
            child.stdin.flush()
        except BrokenPipeError:  # the child died at once: reading says so
            pass
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
        if child.poll() is None:
            child.terminate()
        child.wait()
        messages.close()
        try:
            child.stdin.close()
        except BrokenPipeError:
            pass


def _start(fd: int) -> subprocess.Popen:
    """The child, in a process group of its own: a terminal's Ctrl-C reaches the caller
    alone, which stops the child (a Ctrl-C during the child's start-up would print a Python
    traceback). Its stdin stays open while the call runs: at EOF (the caller finished, or
    died) the child ends. Test crash points in the child kill the caller's group (`arm`)."""
    faults.arm()
    return subprocess.Popen(
        [sys.executable, "-c", _START, str(fd)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,  # the caller's stdout may carry `--json` output
        pass_fds=(fd,),
        process_group=0,
    )


def _serve(fd: int) -> None:
    """The child's side: read the call from stdin, send progress and the outcome on `fd`.
    Whenever the caller is gone (stopped mid-call, its pipe closed) the child ends quietly:
    the caller says what happened."""
    out = Connection(fd, readable=False)
    try:
        fn, args, counts, what = pickle.load(sys.stdin.buffer)
    except (EOFError, pickle.UnpicklingError):  # the caller stopped before it sent the call
        return
    faults.carry(counts)
    use_jemalloc()
    threading.Thread(target=_end_with_caller, daemon=True).start()

    def send(message: tuple) -> None:
        try:
            out.send(message)
        except OSError:  # (BrokenPipeError) the caller is gone, as _end_with_caller sees too
            os._exit(1)

    try:
        result = fn(*args, on_progress=lambda *a: send(("progress", a)))
    except BaseException as error:  # noqa: BLE001  (raised again in the parent)
        if not isinstance(error, PipeError):
            error.add_note(f"(in the {what} process)\n{traceback.format_exc()}")
        try:
            send(("error", error))
        except Exception:  # (an error that does not pickle goes as its text; nothing was sent)
            send(("error", PipeError(f"{type(error).__name__}: {error}")))
        return
    send(("done", result, faults.counts()))


def _end_with_caller() -> None:
    """Wait for EOF on stdin: the caller closed it (done) or died (killed with its group)."""
    sys.stdin.buffer.read()
    os._exit(1)
