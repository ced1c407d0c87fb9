"""`pipe bench tokenize` runs end to end and its token counts agree with the ceiling's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, make_tokenizer, write_jsonl


def test_bench_tokenize_prints_a_table(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl.gz", 300, 3, "c")
    tok = make_tokenizer(tmp_path / "tok")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "bench",
            "tokenize",
            "--corpus",
            str(corpus),
            "--tokenizer",
            str(tok),
            "--scales",
            "1,2",
            "--hf-max-scale",
            "1",
            "--rounds",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| corpus x1 |" in proc.stdout and "| corpus x2 |" in proc.stdout
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["docs"] for r in rows] == [300, 600]
    assert rows[1]["tokens"] == 2 * rows[0]["tokens"]
    assert "hf_tok_s" in rows[0] and "hf_tok_s" not in rows[1]
    assert "median of 2 rounds" in proc.stdout and all(r["rounds"] == 2 for r in rows)
    for r in rows:
        assert r["pipe_s"] > 0 and r["peer_s"] > 0 and r["cached_s"] > 0
        assert r["gigatoken_tok_s"] > 0 and r["pipe_tokenizing_tok_s"] > 0
        assert r["pipe_rss_mb"] > 0 and r["peer_rss_mb"] > 0


def test_tree_rss_counts_a_forked_child_once(tmp_path: Path) -> None:
    """A child forked but not exec'd maps its parent's pages: the tree's RSS is the parent's,
    not twice it; a child that exec'd another program counts with its own pages."""
    import time

    import psutil

    from pipeline.bench import _tree_rss

    code = (
        "import os, time, subprocess, sys; data = bytearray(300 << 20); "
        "pid = os.fork(); time.sleep(30) if pid == 0 else None; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print('ready', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        parent = psutil.Process(proc.pid)
        assert len(parent.children()) == 2
        own = parent.memory_info().rss
        assert own > 300 << 20
        assert own < _tree_rss(parent) < own + (100 << 20)
    finally:
        for p in [*psutil.Process(proc.pid).children(recursive=True)]:
            p.kill()
        proc.kill()
