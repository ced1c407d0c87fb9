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
    for r in rows:
        assert r["pipe_end_to_end"] > 0 and r["ratio_tokenizing"] > 0
        assert r["pipe_peak_rss_mb"] > 0
