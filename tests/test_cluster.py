"""`pipe tokenize` and `pipe curate` with `--ray-address` on a real Ray cluster that pipe joins
rather than starts: a head and a second raylet started here with `ray start` (one CPU each, own
temp dirs: two nodes to Ray), pipe run from a third process, as a user runs it.

The second raylet runs a Python that cannot import pipe, so its chunks and row groups prove
that pipe ships its code (runtime_env py_modules). A third raylet that lacks gigatoken and NeMo
Curator must be refused in one line by both commands, and the second raylet is SIGKILLed
mid-run: Ray retries its chunks on the head and the bytes still match an in-process run. The
test stops exactly the processes it started.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import pipe, write_jsonl
from curate_corpus import CURATE, write_corpus
from ray_cluster import Cluster, bare_python
from reliability import LAYOUT, start

from pipeline.cache import Cache
from util.files import read_json

# Chunks of 100 documents that pause on the cluster's workers (only there: the raylets' env),
# so that both nodes get chunks and a node can be killed while some are in flight.
DOCS = 2000
PAUSE = {"PIPE_PAUSE_AT": "tokenize.worker_arrays:0.6"}
# The planted curate corpus (1,141 documents) in 6 row groups: 6 Curator tasks, over 3 shards.
CURATE_LAYOUT = {"PIPE_DOCS_PER_SHARD": "400", "PIPE_DOCS_PER_ROW_GROUP": "200"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, small_tokenizer: Path) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("cluster")
    write_jsonl(tmp / "alpha.jsonl", DOCS, 7, "alpha")
    blend = tmp / "blend.json"
    blend.write_text(
        json.dumps(
            {
                "name": "cluster",
                "tokenizer": str(small_tokenizer),
                "split": {"valid": 0.02, "test": 0.02},
                "datasets": [{"name": "alpha", "weight": 1.0, "files": str(tmp / "alpha.jsonl")}],
            }
        )
    )
    here = pipe("tokenize", "--blend", blend, "--quiet", "--json", cache=tmp / "c0", env=LAYOUT)
    assert here.code == 0, here.err
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="pc", dir="/tmp")))  # short: sockets
    bare = bare_python(tmp / "bare")
    try:
        head = cluster.start(env=PAUSE)
        worker = cluster.start(python=bare, env=PAUSE)
        yield {
            "tmp": tmp,
            "blend": blend,
            "bins": _bins(here.json["blend_json"]),
            "cluster": cluster,
            "head": head,
            "worker": worker,
            "bare": bare,
        }
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def curate_blend(setup: dict) -> Path:
    """A blend of the planted-junk corpus, so that every curate step removes something."""
    folder = setup["tmp"] / "curate"
    folder.mkdir()
    write_corpus(folder / "planted.jsonl")
    blend = folder / "blend.json"
    planted = {"name": "planted", "files": "planted.jsonl", "curate": CURATE}
    blend.write_text(json.dumps({"name": "curated", "datasets": [planted]}))
    return blend


def _curate(setup: dict, blend: Path) -> list[str | Path]:
    address = setup["cluster"].address
    return ["curate", "--blend", blend, "--quiet", "--json", "--ray-address", address]


def _shards(path: str | Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(path).glob("*.parquet"))}


def _tokenize(setup: dict) -> list[str | Path]:
    """`pipe tokenize` on the cluster pipe joins (from a third process: the test's)."""
    address = setup["cluster"].address
    return ["tokenize", "--blend", setup["blend"], "--quiet", "--json", "--ray-address", address]


def _bins(blend_json: str | Path) -> dict[str, bytes]:
    folders = [Path(p).parent for p in json.loads(Path(blend_json).read_text())["train"][1::2]]
    return {p.name: p.read_bytes() for f in folders for p in sorted(f.glob("*.[bi][id][nx]"))}


def _nodes(cache: Path) -> dict[str, int]:
    (art,) = [a for a in Cache(cache).all() if a.stage == "tokenize"]
    return art.manifest["stats"]["nodes"]


def _chunks(cache: Path) -> int:
    (art,) = [a for a in Cache(cache).all() if a.stage == "download"]
    return len(list(art.path.glob("*.parquet")))


def test_worker_python_cannot_import_pipe(setup: dict) -> None:
    """The second node's Python has Ray and pipe's packages but not pipe's code."""
    probe = "import ray, pyarrow, gigatoken\ntry:\n import stages\nexcept ImportError: print('no')"
    got = subprocess.run([setup["bare"], "-c", probe], capture_output=True, text=True, cwd="/")
    assert got.stdout.strip() == "no", got.stderr


def test_chunks_run_on_both_nodes_bytes_match_cluster_kept(setup: dict) -> None:
    """Chunks ran on both nodes (pipe's code shipped to the one without it), the bin/idx equal
    the in-process run's, and the cluster pipe joined is still up after the command."""
    cache = setup["tmp"] / "c1"
    args = _tokenize(setup)
    res = pipe(*args, cache=cache, env=LAYOUT)
    assert res.code == 0, res.err
    assert _bins(res.json["blend_json"]) == setup["bins"]
    nodes = _nodes(cache)
    assert set(nodes) == {setup["head"].node_id, setup["worker"].node_id}, nodes
    assert all(nodes.values()) and sum(nodes.values()) == _chunks(cache), nodes
    assert setup["head"].alive() and setup["worker"].alive()


def test_curate_row_groups_run_on_both_nodes_bytes_match_cluster_kept(
    setup: dict, curate_blend: Path
) -> None:
    """`pipe curate --ray-address`: NeMo Curator's tasks ran on both nodes, the artifact has the
    key and the shard bytes of a run on a cluster pipe starts itself, and the joined cluster is
    still up after the command."""
    args = ["curate", "--blend", curate_blend, "--quiet", "--json"]
    here = pipe(*args, cache=setup["tmp"] / "k0", env=CURATE_LAYOUT)
    assert here.code == 0, here.err
    there = pipe(*_curate(setup, curate_blend), cache=setup["tmp"] / "k1", env=CURATE_LAYOUT)
    assert there.code == 0, there.err
    assert there.json["artifact"] == here.json["artifact"]
    assert _shards(there.json["path"]) == _shards(here.json["path"])
    stats = there.json["stats"]
    assert stats["removed"] == here.json["stats"]["removed"]
    nodes = stats["nodes"]
    assert set(nodes) == {setup["head"].node_id, setup["worker"].node_id}, nodes
    assert all(nodes.values()) and sum(nodes.values()) == stats["row_groups"] == 6, nodes
    (own,) = here.json["stats"]["nodes"]  # the embedded run: one node, not the joined ones
    assert own not in nodes
    assert setup["head"].alive() and setup["worker"].alive()


def test_node_without_a_dependency_is_refused_in_one_line(setup: dict, curate_blend: Path) -> None:
    """A raylet whose Python lacks gigatoken and NeMo Curator: tokenize and curate refuse
    before any task, naming the node and what to install there; then that raylet is stopped
    like `ray stop` does (SIGTERM)."""
    shim = setup["tmp"] / "shim"
    for hidden in ("gigatoken", "nemo_curator"):
        (shim / hidden).mkdir(parents=True)
        (shim / hidden / "__init__.py").write_text(
            f"raise ModuleNotFoundError('hidden', name={hidden!r})\n"
        )
    lacking = setup["cluster"].start(python=setup["bare"], env={"PYTHONPATH": str(shim)})
    try:
        for args, fix in [
            (_tokenize(setup), "pip install gigatoken=="),
            (_curate(setup, curate_blend), f"pip install nemo_curator=={version('nemo_curator')}"),
        ]:
            res = pipe(*args, cache=setup["tmp"] / "c2", env=LAYOUT)
            assert res.code == 1, res.err
            errors = [line for line in res.err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in res.err, res.err
            assert lacking.node_id[:12] in errors[0] and fix in errors[0], errors[0]
            assert "stages." not in errors[0], errors[0]  # the package, not pipe's modules
    finally:
        lacking.signal(signal.SIGTERM)  # the raylet leaves the cluster at once
    deadline = time.monotonic() + 30
    while lacking.pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    lacking.signal(signal.SIGKILL)
    assert setup["head"].alive() and setup["worker"].alive()


@pytest.mark.parametrize("retries", [3, 0])
def test_node_killed_mid_run(setup: dict, retries: int) -> None:
    """SIGKILL every process of a worker raylet once it has sealed a chunk and holds another.
    With Ray's retries (the default) its lost chunks are redone on the head and the run ends
    well; with none, the run stops in one line naming the lost node, and the same command
    resumes from the sealed chunks. Either way the bytes match the in-process run."""
    cache = setup["tmp"] / f"c3-{retries}"
    worker = setup["worker"] if retries else setup["cluster"].start(setup["bare"], PAUSE)
    args = _tokenize(setup)
    proc, _ = start(args, cache, env={"PIPE_RAY_RETRIES": str(retries)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # (a chunk is sealed by renaming its folder: a receipt found may be gone when read)
        sealed = [read_json(p) or {} for p in cache.glob(".work/*/chunks/*/receipt.json")]
        if any(r.get("node") == worker.node_id for r in sealed):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the worker node sealed a chunk"
    time.sleep(0.2)  # into its next chunk (each pauses 0.6 s), not between two
    worker.signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert not worker.pids()
    if retries:
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == 1 and "Traceback" not in err, err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "lost Ray node" in errors[0], err
        assert worker.node_id[:12] in errors[0], err
        again = pipe(*args, cache=cache, env=LAYOUT)
        assert again.code == 0 and "resuming" in again.err, again.err
        out = again.out
    blend_json = json.loads(out.strip().splitlines()[-1])["blend_json"]
    assert _bins(blend_json) == setup["bins"]
    nodes = _nodes(cache)
    assert nodes.get(worker.node_id, 0) >= 1 and sum(nodes.values()) == _chunks(cache), nodes
    assert setup["head"].alive()


def test_stops_exactly_what_it_started(setup: dict) -> None:
    """The test ends its own cluster by the sessions it started; nothing else is touched and
    nothing of it survives."""
    cluster = setup["cluster"]
    assert cluster.processes()  # the head still runs: pipe never stopped it
    assert cluster.stop() == []
