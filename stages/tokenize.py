"""Tokenize stage: one dataset's Parquet shards -> Megatron bin/idx per split (train/valid/test).

Config (what keys it): dataset, split fractions, limit, the tokenizer's content hash and the
engine (name and version); parent: the download (or curate) artifact. The tokenizer's location
is not keyed: the same files anywhere give the same tokens.

Work is cut into chunks (row groups of a Parquet shard, stages/chunks.py). Locally the chunks
run in this process, a few at a time on every core (the engine's own threads), and each goes,
in corpus order, straight into the bin/idx files (stages/merge.py, megatron-core's
IndexedDatasetBuilder), journaled so that a killed run resumes; with `--ray-address` they run
as Ray tasks across the cluster's nodes, each sealed in the shared cache, then merged in order.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.base import Context
from stages.chunks import (
    Chunk,
    chunk_facts,
    chunk_is_done,
    chunk_receipt,
    list_chunks,
    load,
    split_codes,
    tokenize_chunk,
)
from stages.encoder import EncoderSpec, encoder_for, engine_key, tokenizer_facts
from stages.engine import HFEngine
from stages.indexed import indexed_dataset, token_dtype
from stages.merge import (
    Merger,
    discard_merge,
    drop_resume_files,
    merge_is_done,
    merge_sealed,
    split_runs,
)
from stages.splits import SPLITS, SplitPlan, plan_splits
from util.arrow_memory import use_jemalloc
from util.errors import PipeError
from util.faults import arm, maybe_die
from util.files import read_json
from util.nodes import check_nodes, lost_nodes
from util.threads import Ahead
from util.timing import Stopwatch

NAME = "tokenize"
VERSION = 2
RESUMABLE = True
COLUMNS = ("dataset", "split", "status", "docs", "tokens")
# Chunks encoded at once on a local run. Each encode has single-threaded steps (the
# unstable-text scan, the HF sample, the EOD insert) and a parallel tail
# where the engine's last documents leave cores idle; with a few chunks in flight the other
# chunks fill those cores (encoding GCIDE x1 on 2 cores: 0.35-0.42 s -> 0.25-0.32 s).
ENCODES_IN_FLIGHT = 3


def warm_up(config: dict[str, Any], ctx: Context) -> None:
    """While the parents are still being built: import megatron-core (the bin/idx writer) and,
    for a local run, load the engine (two tokenizers: seconds of CPU between them)."""
    indexed_dataset()
    if not ctx.ray_address:
        encoder_for(_spec(config, tokenizer_facts(config["tokenizer"])), ctx.workers)


def _spec(config: dict[str, Any], facts: dict[str, int]) -> EncoderSpec:
    return EncoderSpec(config["tokenizer"], config["engine"]["choice"], facts["eod_id"])


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    (source,) = parents
    name = config["dataset"]
    clock = Stopwatch()
    # megatron-core (the bin/idx writer) imports torch and the engine loads two tokenizers:
    # begun by warm_up, finished on threads while this one plans the splits and the chunks.
    with ThreadPoolExecutor(2) as pool:
        facts = tokenizer_facts(config["tokenizer"])
        dtype = pool.submit(token_dtype, facts["vocab_size"])
        spec = _spec(config, facts)
        if not ctx.ray_address:
            pool.submit(encoder_for, spec, ctx.workers)
        files = sorted(source.path.glob("*.parquet"))
        chunks = list_chunks(files)
        plan = plan_splits(files, config["valid"], config["test"])
        timing: dict[str, float] = {"plan_s": round(clock.lap(), 3)}
        if merge_is_done(work):
            drop_resume_files(work)  # a kill may have come before they were dropped
            stats: dict[str, Any] = read_json(work / "merged.json")["stats"]
        else:
            if (work / "merged.json").exists():
                ctx.say(f"tokenize {name}: merged output is damaged; redoing it")
                discard_merge(work)
            merger = Merger(work, chunks, dtype.result)
            sealed = {c for c in chunks if c.name not in merger.kept and chunk_is_done(work, c)}
            pending = {c for c in chunks if c.name not in merger.kept and c not in sealed}
            if done := len(chunks) - len(pending):
                ctx.say(
                    f"tokenize {name}: resuming, {done} of {len(chunks)} chunks already done "
                    f"and verified; redoing {len(pending)}"
                )
            with ctx.bar(f"tokenize {name}", source.manifest["stats"]["docs"]) as bar:
                job = _Job(work, chunks, pending, plan, spec, bar)
                if ctx.ray_address:
                    nodes = _run_on_ray(ctx, job, merger)
                    timing["tokenize_s"] = round(clock.lap(), 3)
                    for chunk in chunks:
                        merge_sealed(merger, chunk)
                    stats = merger.finish() | {"nodes": nodes}
                else:
                    timing |= _run_here(ctx, job, merger)
                    timing["tokenize_s"] = round(clock.lap(), 3)
                    stats = merger.finish()
        timing["merge_s"] = round(clock.lap(), 3)  # what is left of it after the last chunk
    if not stats["train"]["docs"]:
        raise PipeError(
            f"dataset {name!r}: no training documents ({source.manifest['stats']['docs']} "
            f"documents in all); raise --limit or lower the blend file's split fractions"
        )
    return stats | {
        "forced": plan.forced,
        "timing": timing,
        "tokenizer": facts | {"path": config["tokenizer"], "dtype": dtype.result()},
        "engine": stats.pop("engine"),
    }


@dataclass(frozen=True)
class _Job:
    """One dataset's chunks to tokenize: all of them in order, and those still to encode."""

    work: Path
    chunks: list[Chunk]
    pending: set[Chunk]
    plan: SplitPlan
    spec: EncoderSpec
    bar: Any


def _chunk_done(bar: Any, receipt: dict[str, Any]) -> None:
    maybe_die("tokenize.chunk_done")
    _advance(bar, receipt)


def _advance(bar: Any, receipt: dict[str, Any]) -> None:
    splits = receipt["stats"].values()
    bar.advance(sum(s["docs"] for s in splits), sum(s["tokens"] for s in splits))


def _run_here(ctx: Context, job: _Job, merger: Merger) -> dict[str, float]:
    """Every chunk in this process, as a pipeline: chunks are read ahead on one thread,
    encoded a few at a time (ENCODES_IN_FLIGHT) on every core (GigaToken and HF `tokenizers`
    release the GIL while they encode), and written in corpus order on another thread, straight
    into the output files. The first chunks are read while the engine and megatron-core load.
    Returns where this thread's time went (seconds): waiting for the engine's load and
    megatron-core's import (begun by warm_up), then, once both were in (`tokenizing_s`), for
    the reader, the engine and the writer."""
    arm()
    clock = Stopwatch()
    in_flight = 1 if ctx.workers == 1 else ENCODES_IN_FLIGHT  # one core: one calling thread

    def prepare(chunk: Chunk) -> tuple[np.ndarray, Any] | None:
        """A chunk read and ready for the engine: its split codes and texts (None: merged by
        a killed run, or sealed by a Ray worker)."""
        if chunk not in job.pending:
            return None
        ids, texts = load(chunk)
        return split_codes(job.plan, ids), texts

    with Ahead((prepare(c) for c in job.chunks), depth=in_flight) as prepared:
        encoder = encoder_for(job.spec, ctx.workers)
        indexed_dataset()  # the writer's module: encoding starts once both are in
        spent = {"load_wait_s": clock.lap()}
        spent |= _encode_and_write(job, merger, encoder, prepared, in_flight)
    spent["tokenizing_s"] = clock.seconds - spent["load_wait_s"]
    return {k: round(v, 3) for k, v in spent.items()}


def _encode_and_write(
    job: _Job, merger: Merger, encoder: HFEngine, prepared: Iterable, in_flight: int
) -> dict[str, float]:
    """The chunks, as `prepared` yields them (in corpus order), `in_flight` encoding at once,
    written in corpus order; returns how long this thread waited for the reader, the engine
    and the writer."""
    clock = Stopwatch()
    spent = dict.fromkeys(("read_wait_s", "encode_wait_s", "write_wait_s"), 0.0)

    def encode(ready: tuple[np.ndarray, Any] | None) -> tuple[np.ndarray | None, Any]:
        """A chunk's split codes and tokens (None for a chunk not to encode); the writer
        thread, which every chunk passes through, does the rest."""
        if ready is None:
            return None, None
        codes, texts = ready
        return codes, encoder.encode(texts)

    def write(chunk: Chunk, codes: np.ndarray | None, encoded: Any) -> None:
        if codes is None:
            _advance(job.bar, merge_sealed(merger, chunk))
            return
        receipt = chunk_facts(codes, encoded, encoder)
        merger.add(chunk, split_runs(encoded.tokens, encoded.lengths, codes), receipt)
        _chunk_done(job.bar, receipt)

    with ThreadPoolExecutor(in_flight) as encoding, ThreadPoolExecutor(1) as writer:

        def encodes() -> Iterator[tuple[Chunk, Future]]:
            """Chunks with their encodes, in corpus order, `in_flight` of them started."""
            window: deque[tuple[Chunk, Future]] = deque()
            for chunk, ready in zip(job.chunks, prepared, strict=True):
                spent["read_wait_s"] += clock.lap()
                window.append((chunk, encoding.submit(encode, ready)))
                del ready
                if len(window) == in_flight:
                    yield window.popleft()
            yield from window

        last: Future | None = None
        for chunk, encoded in encodes():
            result = encoded.result()
            spent["encode_wait_s"] += clock.lap()
            if last is not None:
                last.result()  # one chunk being written: memory stays flat
            spent["write_wait_s"] += clock.lap()
            last = writer.submit(write, chunk, *result)
        if last is not None:
            last.result()
        spent["write_wait_s"] += clock.lap()
    return spent


def _run_on_ray(ctx: Context, job: _Job, merger: Merger) -> dict[str, int]:
    """Chunks as Ray tasks over the cluster, one core each; every worker process loads the
    tokenizer once. Each task writes its sealed chunk into the shared cache; the driver merges
    them afterwards. A task whose node dies is retried by Ray on another node
    (`PIPE_RAY_RETRIES` times, 3); if they run out, the run stops in one line naming the lost
    node, and the same command resumes from the chunks sealed so far.
    Returns how many chunks each Ray node sealed (their receipts say; kept out of the merged
    files, which must not depend on where they were made)."""
    nodes: Counter[str] = Counter()
    for chunk in job.chunks:
        if chunk.name in merger.kept:
            _advance(job.bar, merger.kept[chunk.name])
        elif chunk not in job.pending:
            receipt = chunk_receipt(job.work, chunk)
            nodes.update([receipt["node"]] if "node" in receipt else [])
            _advance(job.bar, receipt)
    ray = ctx.ray()
    alive = check_nodes(ray, _worker_needs(job.spec))
    arm()
    retries = int(os.environ.get("PIPE_RAY_RETRIES", "3"))  # a chunk whose node died
    task = ray.remote(num_cpus=1, max_retries=retries)(_tokenize_on_worker)
    pending = [c for c in job.chunks if c in job.pending]
    waiting = [task.remote(str(job.work), c, job.plan, job.spec) for c in pending]
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        try:
            receipt = ray.get(done[0])
        except ray.exceptions.RayTaskError as e:  # the worker's own error: show that one line
            if isinstance(e.cause, PipeError | OSError):
                raise e.cause from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
            raise PipeError(
                f"tokenize: lost Ray node {lost_nodes(ray, alive)} mid-run and Ray's retries ran "
                f"out ({type(e).__name__}); the sealed chunks are kept: run the same command to "
                f"resume"
            ) from None
        nodes[receipt["node"]] += 1
        _chunk_done(job.bar, receipt)
    return dict(sorted(nodes.items()))


def _worker_needs(spec: EncoderSpec) -> dict[str, str | None]:
    """What a node must import to tokenize: pipe's shipped code, its packages, and the
    driver's tokenizer libraries at the driver's versions (they are in the cache key)."""
    engine = engine_key(spec.engine)
    need = {"stages.chunks": None, "numpy": None, "pyarrow": None}
    need["tokenizers"] = engine["tokenizers"]
    if spec.engine != "hf" and engine["gigatoken"]:
        need |= {"gigatoken": engine["gigatoken"], "awkward": None}
    return need


def _tokenize_on_worker(work: str, chunk: Chunk, plan: SplitPlan, spec: EncoderSpec) -> dict:
    import ray

    use_jemalloc()
    node = ray.get_runtime_context().get_node_id()
    return tokenize_chunk(Path(work), chunk, plan, encoder_for(spec, threads=1), node)


def rows(name: str, stats: dict[str, Any], status: str) -> Iterator[tuple]:
    for split in SPLITS:
        yield (name, split, status, stats[split]["docs"], stats[split]["tokens"])
