"""Turn "make artifact X" into: reuse it, or build it (after its parents), then publish it.

Keys are computed from cheap fingerprints first, so a full cache hit answers without loading a
tokenizer or starting Ray. Only a miss pays for those, and Ray is started here and only here.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import Artifact, Cache, make_key
from pipeline.blend import Blend, DatasetSpec
from pipeline.cluster import ray_cluster, unwrap
from pipeline.errors import PipeError
from pipeline.fingerprint import (
    HashMemo,
    files_fingerprint,
    hub_dataset_revision,
    resolve_tokenizer,
)
from pipeline.report import Reporter, Stopwatch
from stages import download as dl
from stages import tokenize as tk
from stages.base import InputError
from stages.faults import arm, maybe_die

VERSIONS = {"download": 1, "curate": 1, "tokenize": 1, "blend": 1}


@dataclass
class Options:
    """What the command line decides for a run."""

    cache: Cache
    reporter: Reporter = field(default_factory=Reporter)
    limit: int | None = None
    tokenizer: str | None = None  # overrides the blend's
    ray_address: str | None = None
    workers: int | None = None


@dataclass
class Outcome:
    """An artifact a command asked for, and whether it came from the cache."""

    artifact: Artifact
    reused: bool
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact.key,
            "stage": self.artifact.stage,
            "name": self.artifact.manifest.get("name"),
            "path": str(self.artifact.path),
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _TokenJob:
    """One dataset's tokenize build in progress."""

    spec: DatasetSpec
    key: str
    config: dict[str, Any]
    parent: Artifact
    work: Path = Path()
    plan: tk.SplitPlan | None = None
    chunks: list[tk.Chunk] = field(default_factory=list)
    pending: list[tk.Chunk] = field(default_factory=list)
    clock: Stopwatch = field(default_factory=Stopwatch)


def _load_tokenizer(where: str) -> tuple[dict[str, Any], str]:
    """EOD id, vocab size and token dtype, plus the Rust tokenizer as JSON for the workers."""
    try:
        tok = tk.load_tokenizer(where)
    except InputError as e:
        raise PipeError(str(e)) from None
    vocab = len(tok)
    info = {"eod_id": int(tok.eos_token_id), "vocab_size": vocab, "dtype": tk.token_dtype(vocab)}
    return info, tk.backend_json(tok)


class Runner:
    """Plans and runs the stages for one blend."""

    def __init__(self, blend: Blend, opts: Options) -> None:
        self.blend = blend
        self.opts = opts
        self.cache = opts.cache
        self.memo = HashMemo(self.cache.root / ".hashes.json")
        self.say = opts.reporter.say

    # ---- download -------------------------------------------------------------------------
    def download(self, force: bool = False) -> list[Outcome]:
        """One download artifact per dataset of the blend."""
        outcomes = [self._download(ds, force) for ds in self.blend.datasets]
        self._summarise_downloads(outcomes)
        return outcomes

    def _download_plan(self, ds: DatasetSpec) -> tuple[str, dict, Any]:
        config = {
            "dataset": ds.name,
            "text_field": ds.text_field,
            "id_field": ds.id_field,
            "limit": self.opts.limit,
        } | dl.layout_overrides()
        try:
            if ds.files:
                config |= {"files": ds.files, "format": ds.format}
                inputs: Any = files_fingerprint(dl.expand_files(ds.files), self.memo)
            elif Path(ds.hf.path).is_dir():
                config |= {"hf": vars(ds.hf)}
                files = sorted(p for p in Path(ds.hf.path).rglob("*") if p.is_file())
                inputs = files_fingerprint(files, self.memo)
            else:
                revision = hub_dataset_revision(ds.hf.path, ds.hf.revision)
                config |= {"hf": vars(ds.hf) | {"revision": revision}}
                inputs = {"hf_revision": revision}
        finally:
            self.memo.save()
        return make_key("download", VERSIONS["download"], config, [], inputs), config, inputs

    def _download(self, ds: DatasetSpec, force: bool) -> Outcome:
        key, config, inputs = self._download_plan(ds)
        if not force and (art := self.cache.usable("download", key, self.say)):
            return Outcome(art, True)
        with self.cache.lock(key, self.say):
            if not force and (art := self.cache.usable("download", key)):  # built while we waited
                return Outcome(art, True)
            clock = Stopwatch()
            work = self.cache.work_dir(key, fresh=force)
            if ds.files:
                records = dl.read_files(
                    dl.expand_files(ds.files), ds.format, ds.text_field, ds.id_field
                )
            else:
                hf = config["hf"]
                records = dl.read_hub(
                    hf["path"],
                    hf["name"],
                    hf["split"],
                    hf["revision"],
                    hf["data_files"],
                    ds.text_field,
                    ds.id_field,
                )
            with self.opts.reporter.bar(f"download {ds.name}", self.opts.limit, "chars") as bar:
                stats = dl.write_shards(records, work, ds.name, self.opts.limit, bar.advance)
            if stats["docs"] == 0:
                skipped = ", ".join(f"{k}={v}" for k, v in stats["skipped"].items()) or "none"
                raise PipeError(f"dataset {ds.name!r}: no documents to keep (skipped: {skipped})")
            if stats["reused_shards"]:
                self.say(
                    f"download {ds.name}: resumed, {stats['reused_shards']} of "
                    f"{stats['shards']} shards already written and verified"
                )
            # The shard receipts stay in the artifact: a run killed while publishing then resumes
            # with every shard verified instead of redoing them all.
            maybe_die("download.before_publish")
            stats["seconds"] = round(clock.seconds, 3)
            art = self.cache.publish(
                "download",
                key,
                work,
                name=ds.name,
                config=config,
                parents=[],
                inputs=inputs,
                stats=stats,
            )
            return Outcome(art, False, clock.seconds)

    def _summarise_downloads(self, outcomes: list[Outcome]) -> None:
        rep = self.opts.reporter
        for o in outcomes:
            s = o.artifact.manifest["stats"]
            skipped = sum(s.get("skipped", {}).values())
            rep.add_row(
                o.artifact.manifest["name"],
                "reused" if o.reused else "built",
                s["docs"],
                s["chars"],
                skipped,
                s["shards"],
                s.get("seconds", 0.0),
            )
        rep.summary(
            "download", ("dataset", "status", "docs", "chars", "skipped", "shards", "seconds")
        )

    # ---- curate ---------------------------------------------------------------------------
    def curate(self, force: bool = False) -> list[Outcome]:
        """One curate artifact per dataset whose blend entry asks for curation."""
        wanted = [ds for ds in self.blend.datasets if ds.curate is not None]
        if not wanted:
            raise PipeError(
                f"{self.blend.path}: no dataset has a 'curate' key; add \"curate\": {{}} to a "
                f"dataset for the default filters and dedup"
            )
        outcomes = [self._curate(ds, force) for ds in wanted]
        self._summarise_curation(outcomes)
        return outcomes

    def _source(self, ds: DatasetSpec) -> Outcome:
        """What tokenize reads for `ds`: its curated artifact if the blend curates it."""
        return self._curate(ds, False) if ds.curate is not None else self._download(ds, False)

    def _curate(self, ds: DatasetSpec, force: bool) -> Outcome:
        parent = self._download(ds, False).artifact
        config = {"dataset": ds.name, "curate": ds.curate}
        key = make_key("curate", VERSIONS["curate"], config, [parent.key], {})
        if not force and (art := self.cache.usable("curate", key, self.say)):
            return Outcome(art, True)
        with self.cache.lock(key, self.say):
            if not force and (art := self.cache.usable("curate", key)):  # built while we waited
                return Outcome(art, True)
            clock = Stopwatch()
            work = self.cache.work_dir(key, fresh=True)  # a partial curate is redone whole
            files = sorted(parent.path.glob("*.parquet"))
            _quiet_curator_logs()
            # Curator's executor joins this cluster and shuts it down when it is done.
            with ray_cluster(self.opts.ray_address, self.opts.workers):
                from stages import curate as cu  # imports Ray: only after ray_cluster's env

                self.say(f"curate {ds.name}: {parent.manifest['stats']['docs']:,} documents")
                stats = cu.curate(files, work, ds.name, ds.curate, progress=self._bars())
            if stats["docs"] == 0:
                raise PipeError(
                    f"dataset {ds.name!r}: curation removed every document; loosen its "
                    f"'curate' filters in {self.blend.path}"
                )
            stats["seconds"] = round(clock.seconds, 3)
            art = self.cache.publish(
                "curate",
                key,
                work,
                name=ds.name,
                config=config,
                parents=[parent.key],
                inputs={},
                stats=stats,
            )
            return Outcome(art, False, clock.seconds)

    def _bars(self) -> bool:
        rep = self.opts.reporter
        return not rep.quiet and rep.console.is_terminal

    def _summarise_curation(self, outcomes: list[Outcome]) -> None:
        rep = self.opts.reporter
        for o in outcomes:
            s, name = o.artifact.manifest["stats"], o.artifact.manifest["name"]
            status = "reused" if o.reused else "built"
            rep.add_row(name, "input", status, s["docs_in"], s["chars_in"], "", "")
            for step in s["removed"]:
                docs_pct = f"{100 * step['docs'] / max(1, s['docs_in']):.1f}%"
                rep.add_row(name, step["step"], status, -step["docs"], -step["chars"], docs_pct, "")
            rep.add_row(name, "kept", status, s["docs"], s["chars"], "", s.get("seconds", 0.0))
        rep.summary("curate", ("dataset", "step", "status", "docs", "chars", "docs %", "seconds"))

    # ---- tokenize -------------------------------------------------------------------------
    def tokenize(self, force: bool = False) -> Outcome:
        """Tokenize every dataset (reusing what is cached) and write the blend.json artifact."""
        clock = Stopwatch()
        sources = [self._source(ds) for ds in self.blend.datasets]
        spec = self.opts.tokenizer or self.blend.tokenizer
        try:
            where, tok_sha = resolve_tokenizer(spec, self.memo)
        finally:
            self.memo.save()
        jobs = []
        for ds, src in zip(self.blend.datasets, sources, strict=True):
            config = {
                "dataset": ds.name,
                "valid": self.blend.valid,
                "test": self.blend.test,
                "limit": self.opts.limit,
                "tokenizer_sha256": tok_sha,
            }
            key = make_key("tokenize", VERSIONS["tokenize"], config, [src.artifact.key], {})
            jobs.append(_TokenJob(ds, key, config, src.artifact))
        blend_config = {
            "name": self.blend.name,
            "tokenizer": where,
            "weights": {ds.name: ds.weight for ds in self.blend.datasets},
        }
        blend_key = make_key("blend", VERSIONS["blend"], blend_config, [j.key for j in jobs], {})
        if not force and (art := self._reusable_blend(blend_key, jobs)):
            self._summarise_tokens([(j, True) for j in jobs])
            return Outcome(art, True, clock.seconds)
        with ExitStack() as locks:
            for key in sorted({j.key for j in jobs} | {blend_key}):
                locks.enter_context(self.cache.lock(key, self.say))
            if not force and (art := self._reusable_blend(blend_key, jobs)):
                self._summarise_tokens([(j, True) for j in jobs])
                return Outcome(art, True, clock.seconds)
            todo = [j for j in jobs if force or not self.cache.usable("tokenize", j.key, self.say)]
            info = self._build_tokens(todo, where, force) if todo else self._tokenizer_info(jobs)
            tokens = [self.cache.get("tokenize", j.key) for j in jobs]
            maybe_die("blend.before_write")
            self._summarise_tokens([(j, j not in todo) for j in jobs])
            art = self._write_blend(blend_key, blend_config | info, jobs, tokens)
        return Outcome(art, False, clock.seconds)

    def _reusable_blend(self, key: str, jobs: list[_TokenJob]) -> Artifact | None:
        art = self.cache.usable("blend", key)
        if art and all(self.cache.usable("tokenize", j.key, self.say) for j in jobs):
            return art
        return None

    def _tokenizer_info(self, jobs: list[_TokenJob]) -> dict[str, Any]:
        config = self.cache.get("tokenize", jobs[0].key).manifest["config"]
        return {k: config[k] for k in ("eod_id", "vocab_size", "dtype")}

    def _build_tokens(self, jobs: list[_TokenJob], where: str, force: bool) -> dict[str, Any]:
        # Loading the tokenizer (transformers) and megatron-core (the bin/idx writer) costs
        # seconds of imports: done on a thread while this one plans the work and starts Ray.
        with ThreadPoolExecutor(1) as pool:
            loaded = pool.submit(_load_tokenizer, where)
            return self._build_tokens_with(jobs, where, force, loaded)

    def _build_tokens_with(
        self, jobs: list[_TokenJob], where: str, force: bool, loaded: Future
    ) -> dict[str, Any]:
        for job in jobs:
            job.work = self.cache.work_dir(job.key, fresh=force)
            files = sorted(job.parent.path.glob("*.parquet"))
            job.chunks = tk.list_chunks(files)
            job.plan = tk.plan_splits(files, self.blend.valid, self.blend.test)
            if tk.merge_is_done(job.work):
                continue  # merge finished and verified before an interruption
            if (job.work / "merged.json").exists():
                self.say(f"tokenize {job.spec.name}: merged output is damaged; redoing it")
                tk.discard_merge(job.work)
            job.pending = [c for c in job.chunks if not tk.chunk_is_done(job.work, c)]
            if done := len(job.chunks) - len(job.pending):
                self.say(
                    f"tokenize {job.spec.name}: resuming, {done} of {len(job.chunks)} "
                    f"chunks already done and verified; redoing {len(job.pending)}"
                )
        timing = {}  # phases, for `pipe bench`: Ray start, tokenizer, tokenizing, Ray stop, merge
        if any(job.pending for job in jobs):
            clock = Stopwatch()
            arm()
            with ray_cluster(self.opts.ray_address, self.opts.workers) as ray:
                timing["ray_start_s"] = round(clock.lap(), 3)
                info, backend = loaded.result()
                timing["tokenizer_wait_s"] = round(clock.lap(), 3)
                self._run_chunks(ray, jobs, backend, info["eod_id"])
                timing["tokenize_s"] = round(clock.lap(), 3)
            timing["ray_stop_s"] = round(clock.lap(), 3)
        info, _ = loaded.result()
        for job in jobs:
            clock = Stopwatch()
            stats = tk.merge_chunks(job.work, job.chunks, info["dtype"])
            stats["timing"] = timing | {"merge_s": round(clock.lap(), 3)}
            stats["seconds"] = round(job.clock.seconds, 3)
            stats["forced"] = job.plan.forced
            self._check_splits(job, stats)
            maybe_die("tokenize.before_publish")
            self.cache.publish(
                "tokenize",
                job.key,
                job.work,
                name=job.spec.name,
                config=job.config | {"tokenizer": where} | info,
                parents=[job.parent.key],
                inputs={},
                stats=stats,
            )
        return info

    def _run_chunks(self, ray: Any, jobs: list[_TokenJob], backend: str, eod: int) -> None:
        """Tokenize the pending chunks on Ray: one actor per core, each loads the tokenizer once."""
        from ray.util import ActorPool

        tasks = [(job, chunk) for job in jobs for chunk in job.pending]
        total = sum(job.parent.manifest["stats"]["docs"] for job in jobs)
        with self.opts.reporter.bar("tokenize", total) as bar:
            for job in jobs:
                for chunk in job.chunks:
                    if chunk not in job.pending:
                        split_stats = tk.chunk_stats(job.work, chunk).values()
                        bar.advance(
                            sum(s["docs"] for s in split_stats),
                            sum(s["tokens"] for s in split_stats),
                        )
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            n = min(cpus, len(tasks))
            worker = ray.remote(num_cpus=1)(tk.ChunkTokenizer)
            backend_ref = ray.put(backend)
            pool = ActorPool([worker.remote(backend_ref, eod, cpus // n) for _ in range(n)])
            results = pool.map_unordered(
                lambda actor, t: actor.run.remote(str(t[0].work), t[1], t[0].plan), tasks
            )
            try:
                for result in results:
                    maybe_die("tokenize.chunk_done")
                    split_stats = result["stats"].values()
                    bar.advance(
                        sum(s["docs"] for s in split_stats), sum(s["tokens"] for s in split_stats)
                    )
            except Exception as e:  # a Ray wrapper around the worker's own error
                cause = unwrap(e)
                if isinstance(cause, InputError | PipeError | OSError):
                    raise cause from None
                raise

    def _check_splits(self, job: _TokenJob, stats: dict[str, dict[str, int]]) -> None:
        if not stats["train"]["docs"]:
            raise PipeError(
                f"dataset {job.spec.name!r}: no training documents "
                f"({job.parent.manifest['stats']['docs']} documents in all); raise "
                f"--limit or lower the blend's split fractions"
            )

    def _write_blend(
        self, key: str, config: dict, jobs: list[_TokenJob], tokens: list[Artifact]
    ) -> Artifact:
        """blend.json in Megatron's per-split form, listing only non-empty prefixes."""
        per_split: dict[str, list] = {}
        stats: dict[str, Any] = {}
        for split in tk.SPLITS:
            entries = [
                (j.spec, t)
                for j, t in zip(jobs, tokens, strict=True)
                if t.manifest["stats"][split]["docs"] > 0
            ]
            fraction = {"train": 1.0, "valid": self.blend.valid, "test": self.blend.test}[split]
            if fraction > 0 and not entries:
                raise PipeError(
                    f"split {split!r} has no documents in any dataset of "
                    f"{self.blend.path}; raise --limit or set split.{split} to 0"
                )
            total = sum(spec.weight for spec, _ in entries)
            per_split[split] = [
                x
                for spec, t in entries
                for x in (round(spec.weight / total, 6), str(t.path / split))
            ]
            stats[split] = {spec.name: t.manifest["stats"][split] for spec, t in entries}
        work = self.cache.work_dir(key, fresh=True)
        (work / "blend.json").write_text(json.dumps(per_split, indent=2) + "\n")
        shutil.copyfile(self.blend.path, work / "blend.source.json")
        return self.cache.publish(
            "blend",
            key,
            work,
            name=self.blend.name,
            config=config,
            parents=[t.key for t in tokens],
            inputs={},
            stats=stats,
        )

    def _summarise_tokens(self, jobs: list[tuple[_TokenJob, bool]]) -> None:
        rep = self.opts.reporter
        for job, reused in jobs:
            art = self.cache.get("tokenize", job.key)
            s = art.manifest["stats"]
            for split in tk.SPLITS:
                rep.add_row(
                    job.spec.name,
                    split,
                    "reused" if reused else "built",
                    s[split]["docs"],
                    s[split]["tokens"],
                    s[split]["chunks"],
                    s.get("seconds", 0.0),
                )
        rep.summary(
            "tokenize", ("dataset", "split", "status", "docs", "tokens", "chunks", "seconds")
        )


def _quiet_curator_logs() -> None:
    """NeMo Curator logs every stage at INFO; keep only warnings (call before importing it).

    Its loguru setup (cosmos-xenna's) reads PYTHON_LOG when imported, here and in Ray workers.
    """
    import logging
    import os

    os.environ.setdefault("PYTHON_LOG", "warning")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
