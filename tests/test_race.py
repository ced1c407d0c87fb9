"""Two `pipe` runs of the same blend at once: one builds, the other waits (saying for whom) and
reuses; if the builder dies, the waiter takes over and finishes. The cache stays whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import Corpus, _selfmade_corpus
from reliability import assert_nothing_partial, run, snapshot, start, wait_gone

from pipeline.cache import Cache


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return _selfmade_corpus(tmp_path_factory.mktemp("race"))


def _wait_for_lock_holder(cache: Path, timeout: float = 120) -> str:
    """The first lock file that names its holder (a build has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lock in (cache / ".locks").glob("*.lock"):
            if text := lock.read_text().strip():
                return text
        time.sleep(0.05)
    raise AssertionError("no build took a lock")


def _tokenize(small: Corpus, cache: Path, env: dict | None = None) -> tuple:
    return start(["tokenize", "--blend", small.blend, "--quiet", "--json"], cache, env)


def test_second_run_waits_for_the_first_then_reuses(small: Corpus, tmp_path: Path) -> None:
    assert run(["download", "--blend", small.blend, "--quiet"], tmp_path).code == 0
    first, _ = _tokenize(small, tmp_path)
    holder = _wait_for_lock_holder(tmp_path)
    assert holder.startswith(f"pid {first.pid} on ")
    second, _ = _tokenize(small, tmp_path)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    a, b = json.loads(out1.splitlines()[-1]), json.loads(out2.splitlines()[-1])
    assert (a["reused"], b["reused"]) == (False, True)
    assert a["artifact"] == b["artifact"]
    assert f"waiting for pid {first.pid} on " in err2 and " building " in err2
    assert "waiting" not in err1
    assert_nothing_partial(tmp_path)
    assert [x.stage for x in Cache(tmp_path).all()].count("megatron_blend") == 1
    assert not any((tmp_path / ".work").iterdir())


def test_waiter_takes_over_when_the_builder_is_killed(small: Corpus, tmp_path: Path) -> None:
    """The builder dies mid-merge (SIGKILL); the kernel drops its lock, the waiting run gets it,
    resumes from the sealed chunks and publishes; a third run only reuses."""
    assert run(["download", "--blend", small.blend, "--quiet"], tmp_path).code == 0
    doomed, marker = _tokenize(small, tmp_path, {"PIPE_KILL_AT": "tokenize.merge_chunk:5"})
    _wait_for_lock_holder(tmp_path)
    waiter, _ = _tokenize(small, tmp_path)
    doomed.communicate(timeout=300)
    assert doomed.returncode == -9
    assert not wait_gone(marker)
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, err
    assert f"waiting for pid {doomed.pid} on " in err
    resumed = " ".join(err.split()).split("tokenize alpha: resuming, ")[1]
    assert int(resumed.split()[0]) >= 5  # it merged 5 chunks, so at least 5 were sealed
    assert json.loads(out.splitlines()[-1])["reused"] is False
    assert_nothing_partial(tmp_path)
    again = run(["tokenize", "--blend", small.blend, "--quiet", "--json"], tmp_path)
    assert again.code == 0 and again.json["reused"] is True
    before = snapshot(tmp_path)
    assert run(["tokenize", "--blend", small.blend, "--quiet"], tmp_path).code == 0
    assert snapshot(tmp_path) == before


def test_two_downloads_at_once_agree(small: Corpus, tmp_path: Path) -> None:
    runs = [
        start(["download", "--blend", small.blend, "--quiet", "--json"], tmp_path)[0]
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0], [e for _, e in outs]
    results = [json.loads(o.splitlines()[-1]) for o, _ in outs]
    assert len({r["artifact"] for r in results}) == 1
    built = [d for r in results for d in r["datasets"] if not d["reused"]]
    assert len(built) == 2  # each of the two datasets was built exactly once
    assert_nothing_partial(tmp_path)
    assert len(Cache(tmp_path).all()) == 2
