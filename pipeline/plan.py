"""Blend file + command-line options -> the steps a command needs, with their cache keys.

Planning reads only cheap fingerprints (file hashes remembered in the cache, hub revisions, the
tokenizer's files), so a command whose artifacts are all cached answers without loading a
tokenizer or starting Ray. Nothing here builds anything: pipeline/run.py does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifact import Artifact, Request
from pipeline.blend_file import BlendFile, DatasetSpec
from pipeline.fingerprint import HashMemo, files_fingerprint, hub_dataset_revision
from pipeline.fingerprint import resolve_tokenizer as fingerprint_tokenizer
from stages import curate as curate_stage
from stages import download, megatron_blend, tokenize
from stages.encoder import engine_key


@dataclass(frozen=True)
class Options:
    """What the command line decides for the data stages."""

    limit: int | None = None
    tokenizer: str | None = None  # overrides the blend file's
    engine: str = "auto"
    layout: dict[str, Any] = field(default_factory=dict)  # shard sizes and compression


@dataclass(frozen=True)
class Step:
    """One artifact a command needs: its request (what keys it), what its build also needs
    but is not keyed on (`runtime`: where files and the tokenizer are), and its parents."""

    request: Request
    parents: tuple[Step | Artifact, ...] = ()
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return self.request.stage

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def key(self) -> str:
        return self.request.key


def _key_of(parent: Step | Artifact) -> str:
    return parent.key


def step(
    module: Any,
    name: str,
    config: dict,
    parents: tuple = (),
    inputs: Any = None,
    runtime: dict | None = None,
) -> Step:
    """A Step for a stage module (its NAME and VERSION key the request)."""
    request = Request(
        module.NAME, module.VERSION, name, config, tuple(map(_key_of, parents)), inputs
    )
    return Step(request, parents, runtime or {})


class Planner:
    """Makes the steps for one blend file; remembers file hashes in the cache root."""

    def __init__(self, blend: BlendFile, opts: Options, memo: HashMemo) -> None:
        self.blend = blend
        self.opts = opts
        self.memo = memo

    def download(self, ds: DatasetSpec) -> Step:
        config: dict[str, Any] = {
            "dataset": ds.name,
            "text_field": ds.text_field,
            "id_field": ds.id_field,
            "limit": self.opts.limit,
        } | self.opts.layout
        runtime: dict[str, Any] = {}
        try:
            if ds.files:
                files = download.expand_files(ds.files)
                config |= {"format": ds.format}
                inputs: Any = files_fingerprint(files, self.memo)
                runtime["files"] = [str(p) for p in files]
            elif Path(ds.hf.path).is_dir():
                config |= {"hf": vars(ds.hf) | {"path": None}}
                files = sorted(p for p in Path(ds.hf.path).rglob("*") if p.is_file())
                inputs = files_fingerprint(files, self.memo)
                runtime["hf_path"] = ds.hf.path
            else:
                revision = hub_dataset_revision(ds.hf.path, ds.hf.revision)
                config |= {"hf": vars(ds.hf) | {"revision": revision}}
                inputs = {"hf_revision": revision}
                runtime["hf_path"] = ds.hf.path
        finally:
            self.memo.save()
        return step(download, ds.name, config, (), inputs, runtime)

    def source(self, ds: DatasetSpec) -> Step:
        """What tokenize reads for `ds`: its curated shards if the blend file curates it."""
        if ds.curate is None:
            return self.download(ds)
        return self.curate(ds)

    def curate(self, ds: DatasetSpec) -> Step:
        config = {"dataset": ds.name, "curate": ds.curate}
        return step(curate_stage, ds.name, config, (self.download(ds),))

    def tokenizer(self) -> tuple[str, str]:
        """(where to load the tokenizer from, sha256 of its files)."""
        try:
            return fingerprint_tokenizer(self.opts.tokenizer or self.blend.tokenizer, self.memo)
        finally:
            self.memo.save()

    def tokenize(self, ds: DatasetSpec, where: str, tok_sha: str, engine: dict) -> Step:
        config = {
            "dataset": ds.name,
            "valid": self.blend.valid,
            "test": self.blend.test,
            "limit": self.opts.limit,
            "tokenizer_sha256": tok_sha,
            "engine": engine,
        }
        return step(tokenize, ds.name, config, (self.source(ds),), runtime={"tokenizer": where})

    def megatron_blend(self) -> tuple[Step, list[Step]]:
        """The blend.json step and the tokenize steps it lists."""
        where, tok_sha = self.tokenizer()
        engine = engine_key(self.opts.engine)
        tokens = [self.tokenize(ds, where, tok_sha, engine) for ds in self.blend.datasets]
        config = {
            "name": self.blend.name,
            "weights": {ds.name: ds.weight for ds in self.blend.datasets},
            "split": {"valid": self.blend.valid, "test": self.blend.test},
        }
        runtime = {"blend_file": str(self.blend.path)}
        return step(megatron_blend, self.blend.name, config, tuple(tokens), runtime=runtime), tokens
