"""`pipe bench tokenize`: pipe's throughput against the tokenizer's own ceiling, same machine.

The ceiling is the same tokenizer's batch encode on the same text already in memory, using
every core, with no I/O. pipe is timed as a user runs it (a `pipe tokenize` process reusing a
prepared download artifact), and also over its tokenizing phase alone, because Ray's start-up
is a fixed cost that a long job amortises. Peak RSS is summed over pipe's whole process tree
(driver, Ray services, workers) and sampled while it runs; it should not grow with the corpus.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_CORPUS = SHARED / "corpora" / "gcide.jsonl.gz"
DEFAULT_TOKENIZER = SHARED / "tokenizers" / "nemotron-nano-compat"


def scaled_corpus(src: Path, scale: int, out: Path) -> Path:
    """The corpus repeated `scale` times with fresh ids (real text, not invented)."""
    path = out / f"corpus-x{scale}.jsonl.gz"
    with gzip.open(src, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for k in range(scale):
            for d in docs:
                f.write(json.dumps({"id": f"{d['id']}#{k}", "text": d["text"]}) + "\n")
    return path


def ceiling(corpus: Path, tokenizer: str) -> dict[str, Any]:
    """Tokens/s of the tokenizer's own batch encode over in-memory text (run in a subprocess)."""
    from transformers import AutoTokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    backend = AutoTokenizer.from_pretrained(tokenizer).backend_tokenizer
    result: dict[str, Any] = {"docs": len(texts)}
    for name in ("encode_batch", "encode_batch_fast"):
        start = time.perf_counter()
        encodings = getattr(backend, name)(texts, add_special_tokens=False)
        seconds = time.perf_counter() - start
        tokens = sum(len(e.ids) for e in encodings) + len(texts)  # + one EOD per document
        result[name] = tokens / seconds
        result["tokens"] = tokens
        del encodings
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS of the process tree in MB, stdout) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err}")
    return seconds, peak / 2**20, out


def bench_tokenize(
    corpus: Path, tokenizer: str, scales: list[int], workers: int | None
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipe-bench-") as tmp:
        tmp_path = Path(tmp)
        for scale in scales:
            data = scaled_corpus(corpus, scale, tmp_path)
            blend = tmp_path / f"blend-x{scale}.json"
            blend.write_text(
                json.dumps(
                    {
                        "name": f"bench-x{scale}",
                        "tokenizer": tokenizer,
                        "datasets": [{"name": "corpus", "weight": 1, "files": str(data)}],
                    }
                )
            )
            cache = tmp_path / f"cache-x{scale}"
            pipe = [sys.executable, "-m", "pipeline.cli"]
            common = ["--blend", str(blend), "--cache-dir", str(cache), "--quiet", "--json"]
            subprocess.run([*pipe, "download", *common], check=True, capture_output=True)
            cmd = [*pipe, "tokenize", *common] + (["--workers", str(workers)] if workers else [])
            seconds, peak, out = run_measured(cmd)
            blend_art = json.loads(out.strip().splitlines()[-1])
            (token_key,) = json.loads((Path(blend_art["path"]) / "manifest.json").read_text())[
                "parents"
            ]
            stats = json.loads((cache / "tokenize" / token_key / "manifest.json").read_text())[
                "stats"
            ]
            tokens = sum(stats[s]["tokens"] for s in ("train", "valid", "test"))
            ceil = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "pipeline.bench", str(data), tokenizer],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            assert ceil["tokens"] == tokens, (ceil["tokens"], tokens)
            best = max(ceil["encode_batch"], ceil["encode_batch_fast"])
            timing = stats["timing"]
            rows.append(
                {
                    "scale": scale,
                    "docs": ceil["docs"],
                    "tokens": tokens,
                    "ceiling_encode_batch": ceil["encode_batch"],
                    "ceiling_encode_batch_fast": ceil["encode_batch_fast"],
                    "pipe_end_to_end": tokens / seconds,
                    "ratio_end_to_end": tokens / seconds / best,
                    "pipe_tokenizing": tokens / timing["tokenize_s"],
                    "ratio_tokenizing": tokens / timing["tokenize_s"] / best,
                    "seconds": seconds,
                    **timing,
                    "pipe_peak_rss_mb": peak,
                    "ceiling_peak_rss_mb": ceil["peak_rss_mb"],
                }
            )
    return rows


def table(rows: list[dict[str, Any]], cores: int, corpus: str) -> str:
    """A Markdown table, ready for the README."""
    head = (
        "| corpus | docs | tokens | ceiling tok/s (encode_batch / _fast) | pipe tok/s "
        "end-to-end | ratio | pipe tok/s tokenizing phase | ratio | start s (Ray + tokenizer) "
        "| merge s | peak RSS pipe / ceiling MB |"
    )
    lines = [
        f"{cores} cores; ratio = pipe / the faster ceiling.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        lines.append(
            f"| {corpus} x{r['scale']} | {r['docs']:,} | {r['tokens']:,} | "
            f"{r['ceiling_encode_batch']:,.0f} / {r['ceiling_encode_batch_fast']:,.0f} | "
            f"{r['pipe_end_to_end']:,.0f} | {r['ratio_end_to_end']:.2f} | "
            f"{r['pipe_tokenizing']:,.0f} | {r['ratio_tokenizing']:.2f} | "
            f"{r['ray_start_s'] + r['tokenizer_wait_s']:.1f} | {r['merge_s']:.1f} | "
            f"{r['pipe_peak_rss_mb']:,.0f} / {r['ceiling_peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the ceiling runs in its own process so its memory is its own
    print(json.dumps(ceiling(Path(sys.argv[1]), sys.argv[2])))
