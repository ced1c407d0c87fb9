"""Helpers for the kill/resume, race and bad-input tests: run `pipe` in its own session, kill it,
and compare what the cache holds with an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT
from xxhash import xxh3_128_hexdigest

from pipeline.cache import Cache
from util.files import file_checksum, read_json

# Small shards so that a 2,000-document corpus gives 20 download shards, each one tokenize chunk.
LAYOUT = {"PIPE_DOCS_PER_SHARD": "100", "PIPE_DOCS_PER_ROW_GROUP": "50"}
MARKER = "PIPE_TEST_RUN"


@dataclass
class Run:
    code: int
    out: str
    err: str
    marker: str

    @property
    def json(self) -> dict:
        return json.loads(self.out.strip().splitlines()[-1])


def start(args: list, cache: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`pipe ARGS` in a new session (its own process group), tagged with a unique env marker so
    that every process it starts, Ray's included, can be found afterwards."""
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *map(str, args), "--cache-dir", str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **LAYOUT, **(env or {}), MARKER: marker},
        start_new_session=True,
    )
    return proc, marker


def run(args: list, cache: Path, env: dict | None = None, kill_after: float | None = None) -> Run:
    """Run to the end, or SIGKILL only the `pipe` process after `kill_after` seconds."""
    proc, marker = start(args, cache, env)
    try:
        out, err = proc.communicate(timeout=kill_after if kill_after is not None else 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return Run(proc.returncode, out, err, marker)


def processes_of(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if f"{MARKER}={marker}".encode() in environ.split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def wait_gone(marker: str, seconds: float = 20.0) -> list[str]:
    """Processes of a run still alive after `seconds` (empty if all exited)."""
    deadline = time.monotonic() + seconds
    while (left := processes_of(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def snapshot(cache: Path) -> dict:
    """Everything that must be identical between two runs: per-artifact file checksums (by
    stage and dataset name) and blend.json with the cache root taken out."""
    root = Cache(cache).root
    snap: dict = {}
    for art in Cache(cache).all():
        snap[(art.stage, art.manifest["name"], art.key)] = {
            name: f["xxh3"]
            for name, f in art.manifest["files"].items()
            if name != "blend.json"  # holds absolute paths: compared below, root replaced
        }
        if art.stage == "megatron_blend":
            snap["blend.json"] = (art.path / "blend.json").read_text().replace(str(root), "<root>")
    return snap


def assert_nothing_partial(cache: Path) -> None:
    """Every folder under a stage is a whole, published artifact: manifest present, every file
    in it matching its checksum, and no file outside it. Unfinished work stays under .work."""
    store = Cache(cache)
    listed = {(a.stage, a.key) for a in store.all()}
    for stage_dir in store.root.iterdir():
        if stage_dir.name.startswith(".") or not stage_dir.is_dir():
            continue
        for folder in stage_dir.iterdir():
            art = store.get(stage_dir.name, folder.name)
            assert art is not None, f"{folder} is in the cache without a manifest"
            assert (art.stage, art.key) in listed
            assert store.problems(art, full=True) == [], folder
            on_disk = {
                str(p.relative_to(folder))
                for p in folder.rglob("*")
                if p.is_file() and p.name != "manifest.json"
            }
            assert on_disk == set(art.manifest["files"]), folder


def sealed_shards(cache: Path) -> dict[Path, list[Path]]:
    """Per download work folder: the shards a resumed run must keep (receipt + checksum match)."""
    sealed = {}
    for work in (Cache(cache).root / ".work").iterdir():
        shards = []
        for shard in sorted(work.glob("part-*.parquet")):
            receipt = read_json(work / f".{shard.name}.done")
            if receipt and file_checksum(shard) == receipt["xxh3"]:
                shards.append(shard)
        if shards:
            sealed[work] = shards
    return sealed


def sealed_chunks(cache: Path) -> dict[str, int]:
    """Per unfinished tokenize work key: how many chunks a resume must not tokenize again,
    checked here independently of pipe's code: chunks journaled by the merge whose bytes in
    the partial bin files still match the journal's xxh3, and chunks sealed by Ray workers
    whose files match their receipt's checksums."""
    sealed = {}
    for work in (Cache(cache).root / ".work").iterdir():
        n = 0
        for entry_path in work.glob("merged/*.json"):
            entry = read_json(entry_path)
            n += bool(entry) and all(
                _slice_matches(work / f".merge-{split}.bin", where)
                for split, where in entry["splits"].items()
            )
        for receipt_path in work.glob("chunks/*/receipt.json"):
            receipt = read_json(receipt_path)
            folder = receipt_path.parent
            n += bool(receipt) and all(
                (folder / f).is_file() and file_checksum(folder / f) == d
                for f, d in receipt["xxh3"].items()
            )
        if n and not (work / "merged.json").exists():
            sealed[work.name] = n
    return sealed


def _slice_matches(path: Path, where: dict) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        f.seek(where["start"])
        data = f.read(where["end"] - where["start"])
    return len(data) == where["end"] - where["start"] and xxh3_128_hexdigest(data) == where["xxh3"]
