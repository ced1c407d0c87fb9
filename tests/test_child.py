"""util/child.py: a function run in a process of its own reports progress, its result, its
errors and the test crash-point counts back to the caller, as if it had run in place."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from util import faults
from util.child import call_in_child
from util.errors import InputError, PipeError


@pytest.fixture(autouse=True)
def _importable_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child imports the functions below by name, as it would pipe's own."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    monkeypatch.delenv(faults.ENV, raising=False)


def _count(n: int, on_progress) -> tuple[int, int]:
    for i in range(n):
        on_progress(i, i * i)
    faults._hits["point"] = faults._hits.get("point", 0) + 5
    return n, os.getpid()


def _fail(error: Exception, on_progress) -> None:
    raise error


def _die(code: int, on_progress) -> None:
    os._exit(code)


def test_progress_result_and_crash_point_counts_come_back() -> None:
    seen: list[tuple[int, int]] = []
    faults.carry({"point": 2})
    try:
        n, pid = call_in_child(_count, (50,), lambda *a: seen.append(a), "count")
        assert faults.counts() == {"point": 7}  # 2 before, 5 in the child
    finally:
        faults.carry({})
    assert n == 50 and pid != os.getpid()
    assert seen == [(i, i * i) for i in range(50)]  # every report, in order


def test_a_users_error_comes_back_as_it_was_raised() -> None:
    with pytest.raises(InputError, match=r"^data.jsonl line 3: not JSON$") as caught:
        call_in_child(_fail, (InputError("data.jsonl line 3: not JSON"),), print, "fail")
    assert not getattr(caught.value, "__notes__", None)  # one line for the user, no traceback


def test_a_bug_comes_back_with_where_it_happened() -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        call_in_child(_fail, (ZeroDivisionError("deep inside"),), print, "fail")
    (note,) = caught.value.__notes__
    assert "(in the fail process)" in note and "in _fail" in note


def test_a_child_that_dies_says_so() -> None:
    with pytest.raises(PipeError, match=r"the download x process died \(exit code 3\)"):
        call_in_child(_die, (3,), print, "download x")


def _sleep_forever(pid_file: str, on_progress) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        on_progress(0, 0)
        time.sleep(0.05)


def test_the_child_ends_when_its_caller_is_killed(tmp_path: Path) -> None:
    """The child runs in a process group of its own (a terminal's Ctrl-C goes to the caller
    alone); killed without warning, the caller still takes it along (EOF on its stdin)."""
    pid_file = tmp_path / "pid"
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import test_child as t, util.child as c; "
            f"c.call_in_child(t._sleep_forever, ({str(pid_file)!r},), print, 'sleep')",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert caller.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert os.getpgid(child) != os.getpgid(caller.pid)
    caller.kill()
    caller.wait()
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its caller"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) counts as gone
        return f.read().split(") ")[1][0] != "Z"
