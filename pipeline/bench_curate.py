"""Benchmark of `pipe curate`: documents per second through the whole stage on a real corpus.

The download is made first and not timed; the timed part is everything `pipe curate --force`
does for one dataset: Ray start, the Curator pipeline (filters, hashing, MinHash), the global
dedup passes, rewriting the shards and Ray shutdown.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.blend_file import load_blend
from pipeline.cache import Cache
from pipeline.context import Context
from pipeline.fingerprint import HashMemo
from pipeline.plan import Options, Planner
from pipeline.progress import Display
from pipeline.run import ensure

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "gcide.jsonl.gz"


def bench_curate(
    corpus_path: Path = DEFAULT_CORPUS,
    limit: int | None = None,
    curate: dict[str, Any] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Curate `corpus_path` (jsonl with id/text) in a scratch cache; docs/s and what was removed."""
    with tempfile.TemporaryDirectory(prefix="pipe-bench-curate-") as tmp:
        blend_path = Path(tmp) / "blend.json"
        dataset = {"name": "bench", "files": str(corpus_path.resolve()), "curate": curate or {}}
        blend_path.write_text(json.dumps({"name": "bench", "datasets": [dataset]}))
        cache = Cache(Path(tmp) / "cache")
        planner = Planner(load_blend(blend_path), Options(limit=limit), HashMemo(cache.root / "m"))
        (spec,) = planner.blend.datasets
        with Context(Display(quiet=True), workers=workers) as ctx:
            ensure(planner.download(spec), cache, ctx, set())
            start = time.perf_counter()
            outcome = ensure(planner.curate(spec), cache, ctx, {"curate"})
            seconds = time.perf_counter() - start
    stats = outcome.stats
    return {
        "corpus": str(corpus_path),
        "docs_in": stats["docs_in"],
        "chars_in": stats["chars_in"],
        "docs_out": stats["docs"],
        "seconds": round(seconds, 3),
        "docs_per_s": round(stats["docs_in"] / seconds, 1),
        "chars_per_s": round(stats["chars_in"] / seconds),
        "removed": stats["removed"],
    }


if __name__ == "__main__":
    print(json.dumps(bench_curate(), indent=2))
