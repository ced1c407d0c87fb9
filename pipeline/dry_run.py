"""`--dry-run`: the plan before the work. Per dataset: the source, which artifacts are cached and
which would be built, and an estimate of documents, tokens and disk from a sample of the source
tokenized with the blend's tokenizer. Builds nothing, makes no work folder, starts no Ray.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cache import Cache
from pipeline.fingerprint import tokenizer_folder
from pipeline.plan import Planner, Step
from pipeline.sample import Sample, sample_files, sample_shards
from stages.download import SHARD_OPTIONS, Layout, expand_files
from stages.encoder import EncoderSpec, encoder_for, engine_key, tokenizer_facts
from stages.splits import SPLITS
from util.errors import PipeError

ORDER = ("download", "curate", "tokenize", "train")
IDX_BYTES_PER_DOC = 20  # Megatron .idx: int32 length, int64 pointer, int64 document index


def tokenizer_note(planner: Planner) -> str | None:
    """Say so when neither the blend file nor --tokenizer names a tokenizer (a hub default)."""
    raw = json.loads(planner.blend.path.read_text(encoding="utf-8"))
    if planner.opts.tokenizer or "tokenizer" in raw:
        return None
    return (
        f"the blend names no tokenizer: using the default {planner.blend.tokenizer} (set "
        f'"tokenizer" in {planner.blend.path.name} or pass --tokenizer)'
    )


def make_plan(planner: Planner, cache: Cache, until: str, train: Any = None) -> dict[str, Any]:
    """The dry-run plan as one JSON-able dict (printed by `render`)."""
    notes = [n] if (n := tokenizer_note(planner)) else []
    tok = _tokenizer(planner, notes) if ORDER.index(until) >= ORDER.index("tokenize") else None
    datasets = [_dataset(planner, ds, cache, tok, until) for ds in planner.blend.datasets]
    plan: dict[str, Any] = {
        "dry_run": True,
        "blend": str(planner.blend.path),
        "until": until,
        "cache": str(cache.root),
        "tokenizer": tok and {k: v for k, v in tok.items() if k != "sha256"},
        "datasets": datasets,
        "artifacts": [],
        "notes": notes,
    }
    if tok and all(d["artifacts"] for d in datasets):
        blend, _ = planner.megatron_blend()
        plan["artifacts"].append(_state(blend, cache))
        if until == "train":
            plan["artifacts"].append(_train(train, blend, cache, planner, datasets))
    arts = [a for d in datasets for a in d["artifacts"]] + plan["artifacts"]
    build = [a for a in arts if not a["cached"]]
    plan["to_build"] = len(build)
    plan["disk_bytes"] = sum(a.get("disk_bytes") or 0 for a in build)
    return plan


def _tokenizer(planner: Planner, notes: list[str]) -> dict[str, Any] | None:
    try:
        where, sha = planner.tokenizer()
        folder = tokenizer_folder(where)
        facts = tokenizer_facts(str(folder))
    except PipeError as e:
        notes.append(f"no token estimate: {e}")
        return None
    from stages.indexed import token_dtype  # megatron-core's rule (imports torch: plan time only)

    dtype = token_dtype(facts["vocab_size"])
    return facts | {"path": where, "folder": str(folder), "sha256": sha, "dtype": dtype}


def _dataset(
    planner: Planner, ds: Any, cache: Cache, tok: dict | None, until: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": ds.name, "source": _source(ds), "artifacts": [], "notes": []}
    try:
        chain = [planner.download(ds)]
    except PipeError as e:  # a hub source offline: its revision, hence every key, is unknown
        entry["notes"].append(str(e))
        return entry
    if ds.curate is not None and until != "download":
        chain.append(planner.curate(ds))
    elif until == "curate":
        entry["notes"].append("not curated (its blend entry has no 'curate' key)")
    if tok and ORDER.index(until) >= ORDER.index("tokenize"):
        engine = engine_key(planner.opts.engine)
        chain.append(planner.tokenize(ds, tok["path"], tok["sha256"], engine))
    entry["artifacts"] = [_state(s, cache) for s in chain]
    if hf := chain[0].request.config.get("hf"):
        entry["source"]["revision"] = hf["revision"]  # resolved on the hub, or a local folder's
    try:
        entry["estimate"] = _estimate(planner, ds, chain, cache, tok)
    except PipeError as e:
        entry["notes"].append(f"no estimate: {e}")
        return entry
    if entry.get("estimate"):
        for art in entry["artifacts"]:
            art["disk_bytes"] = entry["estimate"]["disk_bytes"].get(art["stage"])
    return entry


def _source(ds: Any) -> dict[str, Any]:
    if ds.files:
        files = expand_files(ds.files)
        return {
            "kind": "files",
            "format": ds.format,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "names": [p.name for p in files[:3]],
        }
    return {"kind": "hf", "path": ds.hf.path, "name": ds.hf.name, "split": ds.hf.split}


def _state(step: Step, cache: Cache) -> dict[str, Any]:
    art = cache.usable(step.stage, step.key)
    return {
        "stage": step.stage,
        "name": step.name,
        "key": step.key,
        "cached": art is not None,
        "path": str(art.path) if art else None,
    }


def _estimate(
    planner: Planner, ds: Any, chain: list[Step], cache: Cache, tok: dict | None
) -> dict[str, Any] | None:
    download = cache.usable("download", chain[0].key)
    if download is not None:
        sample = sample_shards(download.path, download.manifest["stats"])
    elif ds.files:
        sample = sample_files(expand_files(ds.files), ds.format, ds.text_field)
    else:
        return None  # a hub source is not read before its download
    docs, chars = sample.docs, sample.chars
    if (limit := planner.opts.limit) and docs > limit:
        docs, chars = limit, round(chars * limit / max(1, docs))
    compression = planner.opts.layout.get("compression", Layout.compression)
    estimate: dict[str, Any] = {
        "docs": docs,
        "chars": chars,
        "exact_counts": sample.exact,
        "sample": {"docs": len(sample.texts), "chars": sample.sample_chars, "of": sample.origin},
        "disk_bytes": {"download": round(_parquet_bytes_per_char(sample, compression) * chars)},
    }
    if ds.curate is not None:
        estimate["disk_bytes"]["curate"] = estimate["disk_bytes"]["download"]  # at most this
    if tok:
        tokenized = (
            cache.usable("tokenize", chain[-1].key) if chain[-1].stage == "tokenize" else None
        )
        if tokenized is not None:  # already counted
            tokens = sum(tokenized.manifest["stats"][s]["tokens"] for s in SPLITS)
        else:
            tokens = _tokens(planner, sample, tok, docs, chars)
        size = 2 if tok["dtype"] == "uint16" else 4
        estimate["tokens"] = tokens
        estimate["disk_bytes"]["tokenize"] = tokens * size + docs * IDX_BYTES_PER_DOC
    return estimate


def _tokens(planner: Planner, sample: Sample, tok: dict, docs: int, chars: int) -> int:
    """Tokens per character of the sample (the blend's tokenizer, the engine tokenize runs),
    times the characters, plus one end-of-document token per document."""
    if not sample.texts:
        return 0
    spec = EncoderSpec(tok["folder"], planner.opts.engine, tok["eod_id"])
    encoded = encoder_for(spec, None).encode(pa.array(sample.texts, pa.large_string()))
    per_char = (encoded.stats.tokens - len(sample.texts)) / max(1, sample.sample_chars)
    return round(per_char * chars) + docs


def _parquet_bytes_per_char(sample: Sample, compression: str) -> float:
    """The download shards' size per character: the sample written as they are."""
    if not sample.texts:
        return 0.0
    buf = pa.BufferOutputStream()
    table = pa.table({"text": pa.array(sample.texts, pa.string())})
    pq.write_table(table, buf, compression=compression, **SHARD_OPTIONS)
    return buf.getvalue().size / max(1, sample.sample_chars)


def _train(
    train: Any, blend: Step, cache: Cache, planner: Planner, datasets: list[dict]
) -> dict[str, Any]:
    """The run `pipe train` would launch, with its memory and token budget (pipe train's
    preflight; split sizes from the datasets' estimates until the blend is built)."""
    from pipeline.run_train import planned_run
    from pipeline.train_preflight import estimated_splits

    estimate = estimated_splits(planner, datasets)
    step, placed, checks = planned_run(train, blend, cache, estimate)
    return _state(step, cache) | {
        "model": placed.model,
        "layout": f"{placed.nnodes} node(s) x {placed.nproc_per_node} GPU(s): TP={placed.tp} "
        f"PP={placed.pp} DP={placed.dp}",
        "train_iters": placed.train_iters,
        "run_dir": placed.run_dir,
        "torchrun": " ".join(placed.torchrun),
        "preflight": checks.as_dict(),
        "checks": checks.rows(),
    }


def render(plan: dict[str, Any]) -> list[str]:
    """The plan for people, one fact per line."""
    lines = [
        f"dry run (nothing built): {plan['blend']} until {plan['until']}, cache {plan['cache']}"
    ]
    if tok := plan["tokenizer"]:
        lines.append(
            f"tokenizer: {tok['path']} (vocab {tok['vocab_size']:,}, EOD {tok['eod_id']}, "
            f"{tok['dtype']} tokens)"
        )
    lines += [f"note: {n}" for n in plan["notes"]]
    for ds in plan["datasets"]:
        lines.append(f"dataset {ds['name']}")
        lines.append(f"  source    {_describe_source(ds['source'])}")
        lines += [f"  {_describe_state(a)}" for a in ds["artifacts"]]
        if est := ds.get("estimate"):
            lines.append(f"  estimate  {_describe_estimate(est)}")
        lines += [f"  note: {n}" for n in ds["notes"]]
    for art in plan["artifacts"]:
        lines.append(_describe_state(art))
        if art["stage"] == "train":
            lines.append(f"  {art['model']}, {art['layout']}, {art['train_iters']:,} iterations")
            lines.append(f"  run dir {art['run_dir']}")
            lines += [f"  {k:<7} {v}" for k, v in art["checks"].items()]
            lines += [f"warning: {w}" for w in art["preflight"]["warnings"]]
    lines.append(
        f"to build: {plan['to_build']} artifact(s), about {_mb(plan['disk_bytes'])} of disk "
        f"for data (an estimate; checkpoints not counted)"
    )
    return lines


def _describe_source(src: dict[str, Any]) -> str:
    if src["kind"] == "files":
        more = ", ..." if src["files"] > len(src["names"]) else ""
        return (
            f"{src['files']} {src['format']} file(s), {_mb(src['bytes'])} "
            f"({', '.join(src['names'])}{more})"
        )
    rev = src.get("revision") or "revision not resolved"
    return f"hub {src['path']} (name {src['name']}, split {src['split']}) at {rev}"


def _describe_state(art: dict[str, Any]) -> str:
    state = "cached" if art["cached"] else "would be built"
    size = f", ~{_mb(art['disk_bytes'])}" if not art["cached"] and art.get("disk_bytes") else ""
    return f"{art['stage']:<9} {art['key']}  {state}{size}"


def _describe_estimate(est: dict[str, Any]) -> str:
    s = est["sample"]
    counts = "counted" if est["exact_counts"] else "extrapolated by bytes"
    tokens = f", ~{est['tokens']:,} tokens" if "tokens" in est else ""
    return (
        f"~{est['docs']:,} docs, ~{est['chars']:,} chars{tokens} (docs and chars {counts}; "
        f"tokens from a sample of {s['docs']:,} docs, {s['chars']:,} chars of {s['of']})"
    )


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:,.1f} MB"
