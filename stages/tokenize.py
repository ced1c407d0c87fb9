"""Tokenize stage: one dataset's Parquet shards -> Megatron bin/idx per split (train/valid/test).

Config (what keys it): dataset, split fractions, limit, the tokenizer's content hash and the
engine (name and version); parent: the download (or curate) artifact. The tokenizer's location
is not keyed: the same files anywhere give the same tokens.

Work is cut into chunks (one Parquet row group each, stages/chunks.py), each sealed when done;
then stages/merge.py writes them in order through megatron-core's IndexedDatasetBuilder. Locally
the chunks run in this process, one after another, each on every core (the engine's own
threads); with `--ray-address` they run as Ray tasks across the cluster's nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stages.base import Context
from stages.chunks import (
    Chunk,
    chunk_is_done,
    chunk_receipt,
    list_chunks,
    load,
    seal,
    tokenize_chunk,
)
from stages.encoder import EncoderSpec, encoder_for, tokenizer_facts
from stages.merge import discard_merge, merge_chunks, merge_is_done, token_dtype
from stages.splits import SPLITS, SplitPlan, plan_splits
from util.errors import PipeError
from util.faults import arm, maybe_die
from util.timing import Stopwatch

NAME = "tokenize"
VERSION = 2
RESUMABLE = True
COLUMNS = ("dataset", "split", "status", "docs", "tokens")


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    (source,) = parents
    name = config["dataset"]
    clock = Stopwatch()
    # megatron-core (the bin/idx writer) imports torch and the engine loads two tokenizers:
    # seconds, on threads while this one plans the splits and the chunks.
    with ThreadPoolExecutor(2) as pool:
        facts = tokenizer_facts(config["tokenizer"])
        dtype = pool.submit(token_dtype, facts["vocab_size"])
        spec = EncoderSpec(config["tokenizer"], config["engine"]["choice"], facts["eod_id"])
        if not ctx.ray_address:
            pool.submit(encoder_for, spec, ctx.workers)
        files = sorted(source.path.glob("*.parquet"))
        chunks = list_chunks(files)
        plan = plan_splits(files, config["valid"], config["test"])
        timing: dict[str, float] = {"plan_s": round(clock.lap(), 3)}
        if not merge_is_done(work):
            if (work / "merged.json").exists():
                ctx.say(f"tokenize {name}: merged output is damaged; redoing it")
                discard_merge(work)
            pending = [c for c in chunks if not chunk_is_done(work, c)]
            if done := len(chunks) - len(pending):
                ctx.say(
                    f"tokenize {name}: resuming, {done} of {len(chunks)} chunks already done "
                    f"and verified; redoing {len(pending)}"
                )
            with ctx.bar(f"tokenize {name}", source.manifest["stats"]["docs"]) as bar:
                for chunk in chunks:
                    if chunk not in pending:
                        _advance(bar, chunk_receipt(work, chunk))
                run = _run_on_ray if ctx.ray_address else _run_here
                run(ctx, work, pending, plan, spec, bar)
            timing["tokenize_s"] = round(clock.lap(), 3)
        dtype_name = dtype.result()
        timing["import_wait_s"] = round(clock.lap(), 3)
    stats: dict[str, Any] = merge_chunks(work, chunks, dtype_name)
    timing["merge_s"] = round(clock.lap(), 3)
    if not stats["train"]["docs"]:
        raise PipeError(
            f"dataset {name!r}: no training documents ({source.manifest['stats']['docs']} "
            f"documents in all); raise --limit or lower the blend file's split fractions"
        )
    return stats | {
        "forced": plan.forced,
        "timing": timing,
        "tokenizer": facts | {"path": config["tokenizer"], "dtype": dtype_name},
        "engine": stats.pop("engine"),
    }


def _advance(bar: Any, receipt: dict[str, Any]) -> None:
    splits = receipt["stats"].values()
    bar.advance(sum(s["docs"] for s in splits), sum(s["tokens"] for s in splits))


def _run_here(
    ctx: Context, work: Path, pending: list[Chunk], plan: SplitPlan, spec: EncoderSpec, bar: Any
) -> None:
    """Every chunk in this process, in order, as a pipeline: the next chunk is read and the
    last one written and sealed on two threads while the engine encodes this one on every core
    (GigaToken and HF `tokenizers` release the GIL while they encode)."""
    arm()
    encoder = encoder_for(spec, ctx.workers)
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        reads = [reader.submit(load, c) for c in pending[:2]]
        sealed: Future | None = None
        for i, chunk in enumerate(pending):
            ids, texts = reads[i].result()
            if i + 2 < len(pending):
                reads.append(reader.submit(load, pending[i + 2]))
            reads[i] = None  # type: ignore[call-overload]  (let the text go)
            encoded = encoder.encode(texts)
            del texts
            if sealed is not None:
                _chunk_done(bar, sealed.result())
            sealed = writer.submit(seal, work, chunk, plan, ids, encoded, encoder)
        if sealed is not None:
            _chunk_done(bar, sealed.result())


def _chunk_done(bar: Any, receipt: dict[str, Any]) -> None:
    maybe_die("tokenize.chunk_done")
    _advance(bar, receipt)


def _run_on_ray(
    ctx: Context, work: Path, pending: list[Chunk], plan: SplitPlan, spec: EncoderSpec, bar: Any
) -> None:
    """Chunks as Ray tasks over the cluster, one core each; every worker process loads the
    tokenizer once. Each task writes its sealed chunk into the shared cache."""
    ray = ctx.ray()
    arm()
    task = ray.remote(num_cpus=1)(_tokenize_on_worker)
    waiting = [task.remote(str(work), chunk, plan, spec) for chunk in pending]
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        try:
            receipt = ray.get(done[0])
        except Exception as e:  # Ray wraps the worker's own error: show that one line
            cause = getattr(e, "cause", None)
            if isinstance(cause, PipeError | OSError):
                raise cause from None
            raise
        _chunk_done(bar, receipt)


def _tokenize_on_worker(work: str, chunk: Chunk, plan: SplitPlan, spec: EncoderSpec) -> dict:
    return tokenize_chunk(Path(work), chunk, plan, encoder_for(spec, threads=1))


def rows(name: str, stats: dict[str, Any], status: str) -> Iterator[tuple]:
    for split in SPLITS:
        yield (name, split, status, stats[split]["docs"], stats[split]["tokens"])
