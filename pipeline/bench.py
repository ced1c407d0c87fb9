"""`pipe bench tokenize`: pipe against the Megatron-LM fast path and the tokenizers' ceilings,
in one run, on the same machine and input.

Per corpus scale (the corpus repeated with fresh ids), each in its own process so that its
memory and imports are its own:
- the GigaToken ceiling: `encode_batch` over text already in memory, every core, no I/O;
- the HF `tokenizers` ceiling: `encode_batch_fast`, the same way (slow: small scales only);
- the peer: Megatron-LM's fast-path method (pipeline/bench_peer.py), one process, imports
  included, as a user runs `tools/preprocess_data_fast.py`;
- pipe cold: `pipe tokenize` on a fresh cache (download + tokenize + megatron blend);
- pipe cached: the same command again;
- the download stage alone, on a fresh cache (its text MB/s).
Peak RSS is summed over each command's whole process tree, sampled while it runs.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import statistics
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


def hf_ceiling(corpus: Path, tokenizer: str) -> dict[str, Any]:
    """Tokens/s of HF `tokenizers` `encode_batch_fast` over in-memory text, every core."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from tokenizers import Tokenizer

    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    backend = Tokenizer.from_file(str(Path(tokenizer) / "tokenizer.json"))
    start = time.perf_counter()
    encodings = backend.encode_batch_fast(texts, add_special_tokens=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(e.ids) for e in encodings) + len(texts)  # + one EOD per document
    return {"tokens": tokens, "tokens_per_s": tokens / seconds}


def _tree_rss(proc: psutil.Process) -> int:
    """RSS summed over `proc` and its descendants. A child forked but not yet exec'd (torch's
    and megatron-core's imports run `ldconfig` and `git` that way) still maps its parent's
    pages: counted, it doubled pipe's peak (2.0 GB in one round of five at x1), so it is not."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            if p is not proc and p.cmdline() == p.parent().cmdline():
                continue
            total += p.memory_info().rss
        except (psutil.Error, AttributeError):  # gone meanwhile (AttributeError: no parent)
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


def _in_process(function: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.bench", function, *args]


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def bench_scale(
    corpus: Path, tokenizer: str, tmp: Path, workers: int | None, hf: bool, rounds: int
) -> dict[str, Any]:
    """One row: every contender on `corpus`, `rounds` times in turn (so that a slow spell of
    the machine hits all of them); the median of each time and rate, the largest peak RSS."""
    measured = [_round(corpus, tokenizer, tmp, workers, hf and k == 0) for k in range(rounds)]
    row = dict(measured[0])
    for key, value in row.items():
        if isinstance(value, float):
            values = [m[key] for m in measured if key in m]  # (HF: the first round only)
            row[key] = max(values) if key.endswith("_rss_mb") else statistics.median(values)
    return row | {"rounds": rounds}


def _round(
    corpus: Path, tokenizer: str, tmp: Path, workers: int | None, hf: bool
) -> dict[str, Any]:
    """Every contender once on `corpus`."""
    row: dict[str, Any] = {}
    _, row["gigatoken_rss_mb"], out = run_measured(_in_process("gigatoken", str(corpus), tokenizer))
    gigatoken = _last_json(out)
    row |= {"tokens": gigatoken["tokens"], "gigatoken_tok_s": gigatoken["tokens_per_s"]}
    if hf:
        row["hf_tok_s"] = _last_json(run_measured(_in_process("hf", str(corpus), tokenizer))[2])[
            "tokens_per_s"
        ]
    peer = _in_process("peer", str(corpus), tokenizer, str(tmp / "peer"))
    row["peer_s"], row["peer_rss_mb"], out = run_measured(peer)
    assert _last_json(out)["tokens"] == row["tokens"], "the peer wrote other tokens"
    blend = tmp / "blend.json"
    dataset = {"name": "corpus", "weight": 1, "files": str(corpus)}
    blend.write_text(json.dumps({"name": "bench", "tokenizer": tokenizer, "datasets": [dataset]}))
    cache = tmp / "cache"
    cmd = [sys.executable, "-m", "pipeline.cli", "tokenize", "--blend", str(blend)]
    cmd += ["--cache-dir", str(cache), "--quiet", "--json"]
    cmd += ["--workers", str(workers)] if workers else []
    row["pipe_s"], row["pipe_rss_mb"], _ = run_measured(cmd)
    row["cached_s"], _, _ = run_measured(cmd)
    (tokens,) = [json.loads(m.read_text()) for m in cache.glob("tokenize/*/manifest.json")]
    stats = tokens["stats"]
    assert sum(stats[s]["tokens"] for s in ("train", "valid", "test")) == row["tokens"]
    shutil.rmtree(cache)
    # The download stage alone on a fresh cache: in the cold run above it shares the two cores
    # with the megatron-core import and the engine load, started beside it.
    run_measured([*cmd[:3], "download", "--blend", str(blend), "--cache-dir", str(cache)])
    (download,) = [json.loads(m.read_text()) for m in cache.glob("download/*/manifest.json")]
    row["docs"] = download["stats"]["docs"]
    row["download_mb_s"] = download["stats"]["chars"] / download["stats"]["seconds"] / 1e6
    shutil.rmtree(cache)
    # Like the ceilings, which time encoding with the tokenizer already loaded, the phase is
    # timed from the moment the engine and the bin/idx writer are loaded (begun beside the
    # download; what is left of their load at x1 is in pipe's cold seconds, not here) to the
    # last chunk written.
    timing = stats["timing"]
    row["pipe_tokenizing_tok_s"] = row["tokens"] / timing["tokenizing_s"]
    row["engine"] = stats["engine"]
    return row


def bench_tokenize(
    corpus: Path,
    tokenizer: str,
    scales: list[int],
    workers: int | None,
    hf_max_scale: int,
    rounds: int = 5,
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipe-bench-") as tmp:
        for scale in scales:
            folder = Path(tmp) / f"x{scale}"
            folder.mkdir()
            data = scaled_corpus(corpus, scale, folder)
            row = bench_scale(data, tokenizer, folder, workers, scale <= hf_max_scale, rounds)
            rows.append({"scale": scale} | row)
    return rows


def table(rows: list[dict[str, Any]], cores: int, workers: int | None, corpus: str) -> str:
    """A Markdown table, ready for the README."""
    head = (
        "| corpus | docs | tokens | GigaToken ceiling tok/s | HF ceiling tok/s | peer s "
        "(Megatron-LM fast path) | pipe cold s | speed-up vs peer | pipe tokenizing tok/s "
        "| / GigaToken ceiling | download alone MB/s "
        "| cache hit s | peak RSS peer / pipe MB |"
    )
    pipe_cores = f"; pipe's engine on {workers}" if workers else ""
    rounds = rows[0]["rounds"] if rows else 1
    medians = f"; median of {rounds} rounds, peak RSS the largest" if rounds > 1 else ""
    lines = [f"{cores} cores{pipe_cores}{medians}.", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        hf = f"{r['hf_tok_s']:,.0f}" if "hf_tok_s" in r else "-"
        lines.append(
            f"| {corpus} x{r['scale']} | {r['docs']:,} | {r['tokens']:,} | "
            f"{r['gigatoken_tok_s']:,.0f} | {hf} | {r['peer_s']:.1f} | {r['pipe_s']:.1f} | "
            f"{r['peer_s'] / r['pipe_s']:.2f} | {r['pipe_tokenizing_tok_s']:,.0f} | "
            f"{r['pipe_tokenizing_tok_s'] / r['gigatoken_tok_s']:.2f} | "
            f"{r['download_mb_s']:,.0f} | {r['cached_s']:.2f} | "
            f"{r['peer_rss_mb']:,.0f} / {r['pipe_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def _main(function: str, *args: str) -> dict[str, Any]:
    """The contenders that run in a process of their own (python -m pipeline.bench ...)."""
    from pipeline import bench_peer

    if function == "gigatoken":
        return bench_peer.gigatoken_ceiling(Path(args[0]), Path(args[1]))
    if function == "hf":
        return hf_ceiling(Path(args[0]), args[1])
    from stages.encoder import tokenizer_facts

    eod = tokenizer_facts(args[1])["eod_id"]
    result = bench_peer.megatron_fast_path(Path(args[0]), Path(args[1]), eod, Path(args[2]))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    print(json.dumps(_main(*sys.argv[1:])))
