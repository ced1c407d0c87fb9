"""util/arrow_values.py: arrow values built from buffers equal those pyarrow converts from
Python objects, and a JSONL download, which uses them, never imports pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from util.arrow_values import int64s, int_values, scalar


def test_values_equal_what_pyarrow_converts() -> None:
    assert scalar("dataset") == pa.scalar("dataset") and scalar("") == pa.scalar("")
    assert scalar("naïve ✓") == pa.scalar("naïve ✓") and scalar(-7) == pa.scalar(-7)
    values, valid = np.arange(10, 20), np.arange(10) % 3 != 0
    assert int64s(values).equals(pa.array(values))
    expected = pa.array([int(v) if ok else None for v, ok in zip(values, valid, strict=True)])
    assert int64s(values, valid).equals(expected)
    lengths = pa.array([3, 1, 4, 1, 5, 9, 2, 6], pa.int32()).slice(2, 5)  # an offset into
    assert int_values(lengths).tolist() == [4, 1, 5, 9, 2]
    assert int_values(pa.array([2**40], pa.int64())).tolist() == [2**40]


def test_a_jsonl_download_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (0.23 s) on its first conversion of a Python object; a 40 MB
    download takes about as long as that. Blank lines, numeric ids and derived ids included."""
    lines = ['{"id": 7, "text": "a"}', "", '{"text": "b c"}', "  ", '{"id": 9, "text": "d"}']
    (tmp_path / "d.jsonl").write_text("\n".join(lines * 50) + "\n")
    blend = tmp_path / "blend.json"
    dataset = {"name": "d", "weight": 1, "files": "d.jsonl"}
    blend.write_text(json.dumps({"name": "t", "tokenizer": "tok", "datasets": [dataset]}))
    args = ["pipe", "download", "--blend", str(blend), "--cache-dir", str(tmp_path / "c")]
    code = (
        f"import sys; from pipeline.cli import main; sys.argv = {args!r}\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('pandas' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False"
    rows = pq.read_table(next((tmp_path / "c" / "download").glob("*/*.parquet"))).to_pylist()
    got = [(r["id"], r["text"]) for r in rows[:3]]
    assert got == [("7", "a"), ("d:d.jsonl:3", "b c"), ("9", "d")]
    assert len(rows) == 150 and rows[-1]["source_ref"] == "d.jsonl:250"
