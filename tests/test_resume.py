"""Kill -9 `pipe download` and `pipe tokenize` at many points; every resumed run must finish with
the same bytes as an uninterrupted run, keep (not redo) what was sealed, and never list or reuse
a partial artifact. Damaged shards, chunks and published files are found and rebuilt.

Kill points are named places in the code (stages/faults.py, armed by PIPE_KILL_AT) plus kills at
seeded random times; the corpus is cut small (reliability.LAYOUT) so it has 20 shards and 40
chunks to die between.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest
from conftest import Corpus, _selfmade_corpus
from reliability import (
    assert_nothing_partial,
    processes_of,
    run,
    sealed_chunks,
    sealed_shards,
    snapshot,
    start,
    wait_gone,
)

from pipeline.cache import Cache

KILLED = -9

DOWNLOAD_POINTS = [
    "download.record:1",  # before anything is written
    "download.record:57",  # mid-stream, inside the first shard
    "download.record:250",
    "download.record:1300",  # second dataset, after the first was published
    "download.row_group:1",  # half a Parquet file written to its .tmp
    "download.row_group:7",
    "download.row_group:15",
    "download.shard_tmp:1",  # shard complete in .tmp, not renamed
    "download.shard_tmp:5",
    "download.shard_tmp:13",
    "download.shard_written:2",  # shard renamed into place, no receipt yet
    "download.shard_written:12",
    "download.shard_written:17",
    "download.shard_sealed:3",  # receipt written
    "download.shard_sealed:12",  # last shard of the first dataset
    "download.shard_sealed:20",  # last shard of all
    "download.before_publish:1",
    "download.before_publish:2",
    "publish.download:1",  # manifest written, rename not done
    "publish.download:2",
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return _selfmade_corpus(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def baseline(small: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted tokenize (which downloads first) in its own cache."""
    cache = tmp_path_factory.mktemp("baseline")
    done = run(["tokenize", "--blend", small.blend, "--quiet", "--json"], cache)
    assert done.code == 0, done.err
    snap = snapshot(cache)
    return {
        "cache": cache,
        "snap": snap,
        "download": {k: v for k, v in snap.items() if k[0] == "download"},
        "names": {k[2]: k[1] for k in snap if isinstance(k, tuple)},
        "shards": {
            a.manifest["name"]: a.manifest["stats"]["shards"]
            for a in Cache(cache).all()
            if a.stage == "download"
        },
    }


def _download(small: Corpus, cache: Path, **kw: object) -> object:
    return run(["download", "--blend", small.blend, "--quiet"], cache, **kw)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _check_download_resume(small: Corpus, baseline: dict, cache: Path) -> None:
    """Resume after a kill: sealed shards are kept untouched, the rest redone, bytes equal."""
    assert_nothing_partial(cache)
    sealed = sealed_shards(cache)
    stamps = {
        p.name: {s.name: s.stat().st_mtime_ns for s in shards} for p, shards in sealed.items()
    }
    resumed = _download(small, cache)
    assert resumed.code == 0, resumed.err
    store = Cache(cache)
    for key, shards in stamps.items():
        art = store.get("download", key)
        total = baseline["shards"][art.manifest["name"]]
        assert art.manifest["stats"]["reused_shards"] == len(shards)
        assert (
            f"download {art.manifest['name']}: resumed, {len(shards)} of {total} shards "
            "already written and verified"
        ) in _flat(resumed.err)
        for name, mtime in shards.items():  # kept, not rewritten
            assert (art.path / name).stat().st_mtime_ns == mtime
    assert {k: v for k, v in snapshot(cache).items() if k[0] == "download"} == baseline["download"]
    assert_nothing_partial(cache)
    assert not any((store.root / ".work").iterdir())


@pytest.mark.parametrize("point", DOWNLOAD_POINTS)
def test_download_killed_at_point_resumes_identically(
    point: str, small: Corpus, baseline: dict, tmp_path: Path
) -> None:
    killed = _download(small, tmp_path, env={"PIPE_KILL_AT": point})
    assert killed.code == KILLED, f"{point} was never reached: {killed.err}"
    assert not wait_gone(killed.marker)
    _check_download_resume(small, baseline, tmp_path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_download_killed_at_random_time_resumes_identically(
    seed: int, small: Corpus, baseline: dict, tmp_path: Path
) -> None:
    delay = random.Random(seed).uniform(0.6, 1.6)
    killed = _download(small, tmp_path, kill_after=delay)
    assert killed.code in (KILLED, 0), killed.err
    _check_download_resume(small, baseline, tmp_path)


def test_download_rebuilds_damaged_shards(small: Corpus, baseline: dict, tmp_path: Path) -> None:
    """Sealed shards in .work that were truncated or bit-flipped are rewritten, not trusted;
    a published shard that shrank is reported and the artifact rebuilt."""
    killed = _download(small, tmp_path, env={"PIPE_KILL_AT": "download.shard_sealed:6"})
    assert killed.code == KILLED
    ((work, shards),) = sealed_shards(tmp_path).items()
    assert len(shards) == 6
    with open(shards[1], "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    data = bytearray(shards[4].read_bytes())
    data[len(data) // 2] ^= 0xFF
    shards[4].write_bytes(bytes(data))
    resumed = _download(small, tmp_path)
    assert resumed.code == 0, resumed.err
    assert "resumed, 4 of 12 shards already written and verified" in _flat(resumed.err)
    assert {k: v for k, v in snapshot(tmp_path).items() if k[0] == "download"} == baseline[
        "download"
    ]
    art = Cache(tmp_path).get("download", work.name)
    shard = art.path / "part-00003.parquet"
    with open(shard, "r+b") as f:
        f.truncate(100)
    again = _download(small, tmp_path)
    assert again.code == 0, again.err
    assert f"download {work.name}: damaged in the cache" in _flat(again.err)
    assert "part-00003.parquet has 100 bytes" in _flat(again.err)
    assert {k: v for k, v in snapshot(tmp_path).items() if k[0] == "download"} == baseline[
        "download"
    ]
    assert_nothing_partial(tmp_path)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tokenize_killed_again_and_again_resumes_identically(
    small: Corpus, baseline: dict, tmp_path: Path
) -> None:
    """One cache, killed at every phase of tokenize in turn (each resumed run is killed at the
    next point), then finished: the result equals the uninterrupted run, byte for byte."""
    cache = tmp_path
    assert _download(small, cache).code == 0
    names = baseline["names"]
    chain = [
        "tokenize.chunk_done:2",  # two chunks written and journaled
        "tokenize.chunk_done:6",  # the resumed run carried those two over, then went on
        "tokenize.merge_chunk:10",  # mid-merge of the first dataset's train split
        "tokenize.merge_split:1",  # train.bin/idx written, valid not
        "tokenize.merged:1",  # merged.json written, chunks not yet removed
        "tokenize.before_publish:1",  # (after redoing a merge whose output was damaged)
        "publish.tokenize:1",  # manifest written, rename not done
        "tokenize.merge_chunk:8",  # second dataset mid-merge (the first is published)
        "megatron_blend.before_write:1",
        "publish.megatron_blend:1",
    ]
    for step, point in enumerate(chain):
        sealed = sealed_chunks(cache)
        if point == "tokenize.merge_chunk:10":
            # Damage two journaled chunks (the bytes of one, the journal entry of another):
            # the resume must neither count nor use them.
            (key, n), *_ = sealed.items()
            entries = sorted((cache / ".work" / key / "merged").glob("*.json"))
            where = json.loads(entries[0].read_text())["splits"]["train"]
            with open(cache / ".work" / key / ".merge-train.bin", "r+b") as f:
                f.seek((where["start"] + where["end"]) // 2)
                byte = f.read(1)[0]
                f.seek(-1, 1)
                f.write(bytes([byte ^ 0xFF]))
            entries[1].write_text(entries[1].read_text()[:10])
            sealed[key] = n - 2
        if point == "tokenize.before_publish:1":
            # Damage a finished merge: it is redone from scratch (its journal went with it).
            (bin_path,) = list((cache / ".work").glob("*/train.bin"))
            _flip(bin_path)
            sealed.pop(bin_path.parent.name, None)
        killed = run(
            ["tokenize", "--blend", small.blend, "--quiet"], cache, env={"PIPE_KILL_AT": point}
        )
        assert killed.code == KILLED, f"step {step} {point} was never reached: {killed.err}"
        assert not wait_gone(killed.marker), f"processes left after a kill at {point}"
        for key, n in sealed.items():
            total = baseline["shards"][names[key]]  # a small shard is one chunk
            assert (
                f"tokenize {names[key]}: resuming, {n} of {total} chunks already done and "
                f"verified; redoing {total - n}"
            ) in _flat(killed.err), (point, killed.err)
        if point == "tokenize.before_publish:1":
            assert "merged output is damaged; redoing it" in _flat(killed.err)
        assert_nothing_partial(cache)
    done = run(["tokenize", "--blend", small.blend, "--quiet", "--json"], cache)
    assert done.code == 0, done.err
    assert done.json["reused"] is False
    assert snapshot(cache) == baseline["snap"]
    assert_nothing_partial(cache)
    assert not any((cache / ".work").iterdir())


def test_tokenize_driver_killed_at_random_time_leaves_no_ray_processes(
    small: Corpus, baseline: dict, tmp_path: Path
) -> None:
    """SIGKILL of the `pipe` process alone (not its group), at a seeded random moment once Ray
    is up: gcs_server and raylet die with it (kernel fate-sharing); the agents raylet started
    linger until they see their raylet gone (about a minute) unless the resumed run can tell
    them apart (PIPE_RAY_OWNER in their environment, which they do not always carry) and ends
    them first. Either way none outlives its minute, and the resumed run finishes identically."""
    assert _download(small, tmp_path).code == 0
    proc, marker = start(
        ["tokenize", "--blend", small.blend, "--quiet", "--ray-address", "local"], tmp_path
    )
    deadline = time.monotonic() + 120
    while not any("raylet" in p for p in processes_of(marker)):
        assert time.monotonic() < deadline and proc.poll() is None, "Ray never started"
        time.sleep(0.05)
    time.sleep(random.Random(7).uniform(0.0, 4.0))
    proc.kill()
    proc.communicate()
    assert_nothing_partial(tmp_path)
    done = run(["tokenize", "--blend", small.blend, "--quiet", "--ray-address", "local"], tmp_path)
    assert done.code == 0, done.err
    assert not wait_gone(marker, 90), "Ray processes of the killed run outlived their minute"
    assert not wait_gone(done.marker)
    assert snapshot(tmp_path) == baseline["snap"]


def test_damaged_published_tokens_are_rebuilt_not_reused(
    baseline: dict, small: Corpus, tmp_path: Path
) -> None:
    """A published bin that lost bytes is caught on reuse (size check) and by `artifacts verify`
    (checksum) when only a byte flipped; tokenize rebuilds it to the original bytes."""
    cache = tmp_path / "cache"
    shutil.copytree(baseline["cache"], cache)
    store = Cache(cache)
    tokens = [a for a in store.all() if a.stage == "tokenize"]
    _flip(tokens[0].path / "train.bin")
    verify = run(["artifacts", "verify", tokens[0].key], cache)
    assert verify.code == 1
    assert f"{tokens[0].key}: train.bin does not match its checksum" in _flat(verify.err)
    assert run(["artifacts", "verify", tokens[1].key], cache).code == 0
    with open(tokens[0].path / "train.bin", "r+b") as f:
        f.truncate(1000)
    again = run(["tokenize", "--blend", small.blend, "--quiet", "--json"], cache)
    assert again.code == 0, again.err
    assert f"tokenize {tokens[0].key}: damaged in the cache" in _flat(again.err)
    assert again.json["reused"] is False
    snap = snapshot(cache)
    assert snap["blend.json"] == baseline["snap"]["blend.json"]
    assert {k: v for k, v in snap.items() if k != "blend.json"} == {
        k: v for k, v in baseline["snap"].items() if k != "blend.json"
    }
    assert run(["artifacts", "verify", tokens[0].key], cache).code == 0
