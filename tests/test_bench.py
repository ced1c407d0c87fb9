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
