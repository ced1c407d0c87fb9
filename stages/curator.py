"""NeMo Curator pipeline of the curate stage: download shards -> filtered, deduplicated shards.

A NeMo Curator `Pipeline` runs on the executor it is given (Ray Data, which fits a 2-core
machine where Xenna's default sizing does not), one task per Parquet row group:

    read row group -> ScoreFilter per heuristic (counting what each removes) -> exact hash
    -> MinHash signature -> spill the survivors' text to the work dir

Only ids, hashes and signatures come back to the driver, where the global dedup stages see the
whole corpus at once in (shard, row) order. The kept documents are then rewritten with the
download stage's shard writer, so tokenize reads curated and raw artifacts alike.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.ray_data import RayDataExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text.filters import ScoreFilter, heuristic
from nemo_curator.stages.text.filters.heuristic import repetition
from nemo_curator.tasks import DocumentBatch, Task

from stages import download as dl
from stages.curate_config import curator_kwargs, describe
from stages.dedup import (
    DROP,
    EXACT,
    SEQ,
    SIGNATURE,
    ExactDuplicates,
    ExactHash,
    FuzzyDuplicates,
    MinHashSignature,
)
from stages.readers import BATCH

CHARS = "_chars"
COLUMNS = dl.SCHEMA.names
SPILL = ".spill"


@dataclass
class RowGroupTask(Task[dict]):
    """One row group of one download shard; `seq` is the corpus position of its first row."""

    data: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return 1

    def validate(self) -> bool:
        return True


@dataclass
class ReadRowGroup(ProcessingStage[RowGroupTask, DocumentBatch]):
    """Reads one row group into a DocumentBatch with its corpus positions and lengths."""

    name: str = "read_row_group"

    def process(self, task: RowGroupTask) -> DocumentBatch:
        pf = pq.ParquetFile(task.data["path"])
        df = pf.read_row_group(task.data["row_group"], columns=COLUMNS).to_pandas()
        df[SEQ] = np.arange(task.data["seq"], task.data["seq"] + len(df), dtype=np.int64)
        df[CHARS] = df["text"].str.len().astype(np.int64)
        meta = {
            "seq": task.data["seq"],
            "docs_in": len(df),
            "chars_in": int(df[CHARS].sum()),
            "node": ray.get_runtime_context().get_node_id(),  # where it ran: stats "nodes"
        }
        return DocumentBatch(dataset_name=task.dataset_name, data=df, _metadata=meta)


@dataclass
class CountingScoreFilter(ScoreFilter):
    """Curator's ScoreFilter that also tallies the documents and characters it removes."""

    step: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = self.step or self.name

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        before = batch.to_pandas()
        out = super().process(batch)
        after = out.to_pandas()
        removed = out._metadata.setdefault("removed", {})
        docs, chars = removed.get(self.name, (0, 0))
        removed[self.name] = (
            docs + len(before) - len(after),
            chars + int(before[CHARS].sum()) - int(after[CHARS].sum()),
        )
        return out


@dataclass
class Spill(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Writes the batch's surviving text to the work dir; passes on only the small columns."""

    folder: str = ""
    name: str = "spill"

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas()
        if len(df):
            table = pa.Table.from_pandas(
                df[[*COLUMNS, SEQ]],
                schema=dl.SCHEMA.append(pa.field(SEQ, pa.int64())),
                preserve_index=False,
            )
            # aside, then renamed: a task that dies mid-write (a lost node) leaves no partial
            # .parquet for the driver to read, and its retry writes the whole file again
            spilled = Path(self.folder) / f"{batch._metadata['seq']:012d}.parquet"
            partial = spilled.with_suffix(f".partial-{os.getpid()}")
            pq.write_table(table, partial)
            os.replace(partial, spilled)
        small = df[[c for c in (SEQ, CHARS, EXACT, SIGNATURE) if c in df.columns]].copy()
        small[DROP] = ""
        return DocumentBatch(dataset_name=batch.dataset_name, data=small, _metadata=batch._metadata)


def plan(files: list[Path], dataset: str) -> list[RowGroupTask]:
    """One task per row group, in corpus order (download keeps row groups <= 1000 docs)."""
    tasks, seq = [], 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            data = {"path": str(path), "row_group": rg, "seq": seq}
            tasks.append(RowGroupTask(dataset_name=dataset, data=data))
            seq += meta.row_group(rg).num_rows
    return tasks


def build_stages(config: dict[str, Any], spill: Path) -> list[ProcessingStage]:
    """The parallel part of the pipeline for a normalised `curate` config."""
    stages: list[ProcessingStage] = [ReadRowGroup()]
    for spec in config["filters"]:
        cls, kwargs = curator_kwargs(spec)
        filter_cls = getattr(heuristic, cls, None) or getattr(repetition, cls)
        stages.append(CountingScoreFilter(filter_cls(**kwargs), step=spec["name"]))
    if config["exact_dedup"]:
        stages.append(ExactHash())
    if fuzzy := config["fuzzy_dedup"]:
        stages.append(MinHashSignature(fuzzy["num_perm"], fuzzy["ngram"], fuzzy["seed"]))
    stages.append(Spill(str(spill)))
    return stages


def curate(
    files: list[Path],
    work: Path,
    dataset: str,
    config: dict[str, Any],
    executor: BaseExecutor | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Curate `files` into Parquet shards in `work`; stats say what each step removed and how
    many row groups each Ray node curated.

    `executor` defaults to Curator's RayDataExecutor on the Ray cluster already connected in
    this process, which the command's context owns (see `SharedClusterExecutor`).
    """
    from ray.data import DataContext

    spill = work / SPILL
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    tasks = plan(files, dataset)
    DataContext.get_current().enable_progress_bars = progress
    # Importing ray.data set its logger to DEBUG; quiet, not even the "bars disabled" warning.
    logging.getLogger("ray.data").setLevel(logging.WARNING if progress else logging.ERROR)
    pipeline = Pipeline(name=f"curate-{dataset}", stages=build_stages(config, spill))
    results = pipeline.run(executor=executor or SharedClusterExecutor(), initial_tasks=tasks)
    docs_in = sum(r._metadata["docs_in"] for r in results)
    nodes = Counter(r._metadata["node"] for r in results)
    chars_in = sum(r._metadata["chars_in"] for r in results)
    removed = {step: [0, 0] for step in describe(config)}
    for r in results:
        for step, (docs, chars) in r._metadata.get("removed", {}).items():
            removed[step][0] += docs
            removed[step][1] += chars
    frames = [r.to_pandas() for r in results if r.num_items]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({SEQ: [], DROP: []})
    batch = DocumentBatch(dataset_name=dataset, data=table)
    if config["exact_dedup"]:
        batch = ExactDuplicates().process(batch)
    if fuzzy := config["fuzzy_dedup"]:
        batch = FuzzyDuplicates(fuzzy["threshold"], fuzzy["num_perm"], fuzzy["seed"]).process(batch)
    table = batch.to_pandas()
    for step in ("exact_dedup", "fuzzy_dedup"):
        gone = table[table[DROP] == step]
        if step in removed:
            removed[step] = [len(gone), int(gone[CHARS].sum())]
    keep = set(table.loc[table[DROP] == "", SEQ].tolist())
    written = dl.write_shards(_kept(spill, keep), work, dataset, None, lambda d, c: None)
    shutil.rmtree(spill)
    for receipt in work.glob(".part-*.done"):
        receipt.unlink()
    return {
        "docs_in": docs_in,
        "chars_in": chars_in,
        "docs": written["docs"],
        "chars": written["chars"],
        "shards": written["shards"],
        "row_groups": len(tasks),
        "nodes": dict(sorted(nodes.items())),  # row groups per Ray node id
        "removed": [{"step": s, "docs": d, "chars": c} for s, (d, c) in removed.items()],
    }


class SharedClusterExecutor(RayDataExecutor):
    """Curator's Ray Data executor without its `ray.init()` and closing `ray.shutdown()`: the
    cluster belongs to the command (pipeline/context.py), which connects once (to one it
    started or joined) and disconnects once, so curating several datasets and tokenizing on
    Ray in one command share one cluster. (Curator's second `ray.init` would change nothing
    but Ray's log level, back to INFO.)"""

    def execute(
        self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None
    ) -> list[Task]:
        if not ray.is_initialized():
            raise RuntimeError("SharedClusterExecutor runs on a connected cluster: ctx.ray()")
        init, shutdown = ray.init, ray.shutdown
        ray.init = ray.shutdown = lambda *args, **kwargs: None
        try:
            return super().execute(stages, initial_tasks)
        finally:
            ray.init, ray.shutdown = init, shutdown


def _kept(spill: Path, keep: set[int]) -> Iterator[pa.Table]:
    """The surviving documents in corpus order, as batches for the download shard writer."""
    wanted = pa.array(sorted(keep), pa.int64())
    for path in sorted(spill.glob("*.parquet")):
        table = pq.read_table(path)
        table = table.filter(pc.is_in(table.column(SEQ), value_set=wanted))
        yield pa.Table.from_arrays(
            [table.column("id"), table.column("text"), table.column("source_ref")], schema=BATCH
        )
