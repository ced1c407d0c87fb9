"""A real Ray cluster on this machine for tests/test_cluster.py: a head and raylets started with
`ray start` (as a user starts one), each in its own session so the test can stop exactly what
it started: every process of those sessions, by pid, never a machine-wide `ray stop`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from reliability import MARKER, processes_of, wait_gone

# What pipe/cluster.py sets for its own clusters; a `ray start` needs the same.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`: all a `ray start` left running."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def bare_python(folder: Path) -> Path:
    """A venv that sees this project's packages but not pipe itself: the editable install's
    .pth is not read from a folder that is only listed in another .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(folder.glob("lib/python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


@dataclass
class Raylet:
    sid: int  # the `ray start` ran as leader of a new session; its daemons stay in it
    temp: Path
    node_id: str

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def signal(self, sig: int) -> None:
        for _ in range(5):  # a process may fork while we go
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            if not pids or sig != signal.SIGKILL:
                return
            time.sleep(0.2)

    def alive(self) -> bool:
        return any(b"raylet/raylet" in _cmdline(p) for p in self.pids())


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass
class Cluster:
    """One head and the raylets joined to it; all processes carry `marker` in their env."""

    root: Path
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    raylets: list[Raylet] = field(default_factory=list)
    address: str = ""

    def start(self, python: Path | None = None, env: dict | None = None) -> Raylet:
        """The head (first call) or a raylet joined to it, with one CPU and its own temp dir;
        `python`: the interpreter its workers run (default: this venv's)."""
        temp = Path(tempfile.mkdtemp(prefix="n", dir=self.root))
        ray = [str(python), "-m", "ray.scripts.scripts"] if python else [_venv_ray()]
        args = ["start", "--num-cpus=1", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"]
        if not self.raylets:
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            args += [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
            ]
        else:
            args += [f"--address={self.address}"]
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        full = {**inherited, **RAY_ENV, **(env or {}), MARKER: self.marker}
        proc = subprocess.Popen(
            [*ray, *args],
            cwd=temp,
            env=full,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate(timeout=120)
        raylet = Raylet(proc.pid, temp, "")
        self.raylets.append(raylet)  # before the check: stop() must find it either way
        assert proc.returncode == 0, out[-3000:]
        raylet.node_id = _node_id(temp)
        return raylet

    def stop(self) -> list[str]:
        """SIGKILL every process this cluster started; return what is left of them (by env
        marker, or by a temp dir in the command line): empty when all are gone, and then its
        temp dirs are removed too."""
        for raylet in reversed(self.raylets):
            raylet.signal(signal.SIGKILL)
        left = wait_gone(self.marker, 20)
        dirs = [str(r.temp) for r in self.raylets]
        for pid in Path("/proc").iterdir():
            if pid.name.isdigit() and any(d.encode() in _cmdline(int(pid.name)) for d in dirs):
                left.append(_cmdline(int(pid.name)).decode(errors="replace")[:160])
        if not left:
            shutil.rmtree(self.root, ignore_errors=True)
        return left

    def processes(self) -> list[str]:
        return processes_of(self.marker)


def _venv_ray() -> str:
    return str(Path(sys.executable).parent / "ray")


def _node_id(temp: Path, seconds: float = 30) -> str:
    """The node id its raylet logged (`Setting node ID node_id=...`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for log in temp.glob("session_*/logs/raylet.out"):
            if found := re.search(r"node_id=([0-9a-f]{56})", log.read_text(errors="replace")):
                return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no raylet node id under {temp}")
