"""The GPU scripts' CPU-side parts: start-up time in the record, the bare-vs-pipe comparison of
Megatron logs, the corpus assembly, and the committed records they produced."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from training import record

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "training" / "gpu" / "results"
sys.path.insert(0, str(ROOT / "training" / "gpu"))

import assemble_corpus  # noqa: E402
import compare_bare  # noqa: E402


def test_startup_is_torchrun_start_to_the_first_iteration_of_each_launch(tmp_path: Path) -> None:
    folder = tmp_path / record.RECORD_DIR
    folder.mkdir()
    meta = {"tokens_per_iteration": 8, "flops_per_iteration": 1e12, "world_size": 1}
    record.append_line(folder / record.META, meta | {"launch": 0, "launched_at": 100.0})
    record.append_line(
        folder / record.STEPS,
        {"iteration": 1, "launch": 0, "seconds": 4.0, "time": 140.0, "loss": 3.0},
    )
    record.append_line(
        folder / record.STEPS,
        {"iteration": 2, "launch": 0, "seconds": 1.0, "time": 141.0, "loss": 2.0},
    )
    record.append_line(folder / record.META, meta | {"launch": 1, "launched_at": 200.0})
    record.append_line(
        folder / record.STEPS,
        {"iteration": 3, "launch": 1, "seconds": 2.0, "time": 252.0, "loss": 1.0},
    )
    rec = record.assemble(tmp_path, {"tokens_per_iteration": 8, "world_size": 1})
    assert [x["startup_seconds"] for x in rec["launches"]] == [36.0, 50.0]
    # Records written before steps carried a wall time have none.
    assert record.startup_seconds({"launch": 0}, [{"launch": 0, "seconds": 1.0}]) is None


# Megatron's own line format (Bridge's training_log), iteration 1 then the rest.
LOG = (
    " [2026-11-23 01:39:19] iteration        1/      30 | consumed samples:           16 |"
    " elapsed time per iteration (ms): 9000.0 | throughput per GPU (TFLOP/s/GPU): 28.5 |"
    " lm loss: 1.2E+01 |\n{rows}\n"
)


def fake_log(ms: dict[int, float]) -> str:
    rows = "\n".join(
        f" [2026-11-23 01:39:20] iteration {i:8d}/      30 | consumed samples: {16 * i:12d} | "
        f"elapsed time per iteration (ms): {t:.1f} | throughput per GPU (TFLOP/s/GPU): "
        f"{257.3 / t * 1000:.1f} | lm loss: 6.0E+00 |"
        for i, t in ms.items()
    )
    return LOG.format(rows=rows)


def test_compare_reads_megatron_iteration_lines_and_skips_warmup_and_eval() -> None:
    bare = {i: 570.0 for i in range(2, 31)} | {16: 5000.0}  # 16 holds the eval after 15
    pipe = {i: 564.0 for i in range(2, 31)} | {2: 3000.0, 3: 3000.0}
    result = compare_bare.compare(fake_log(bare), fake_log(pipe), eval_interval=15)
    assert result["bare_bridge"]["iterations_logged"] == 30
    assert result["bare_bridge"]["iterations_timed"] == 26  # 4..30 less 16
    assert result["bare_bridge"]["seconds_per_iteration_median"] == pytest.approx(0.570)
    assert result["pipe_train"]["seconds_per_iteration_mean"] == pytest.approx(0.564)
    assert result["pipe_over_bare"] == pytest.approx(0.564 / 0.570)
    with pytest.raises(SystemExit, match="no timed iterations"):
        compare_bare.summary("no megatron here", 15)


def test_assembled_corpus_cuts_whole_articles_and_speeches(tmp_path: Path) -> None:
    wiki = tmp_path / "w.txt"
    wiki.write_text(" \n = A = \n \n text a \n = = Sub = = \n more a \n = B = \n text b \n")
    docs = assemble_corpus.wikitext_articles([wiki])
    assert len(docs) == 2 and "Sub" in docs[0] and docs[1].startswith("= B =")
    speeches = "\n\n".join(f"Speaker {i}:\n" + " ".join(["word"] * 50) for i in range(40))
    chunks = assemble_corpus.speech_chunks(speeches, size=1000)
    assert "\n\n".join(chunks) == speeches.strip()  # nothing lost, cut only at blank lines
    assert all(len(c) >= 1000 for c in chunks[:-1])
    out = tmp_path / "s.jsonl.gz"
    assert assemble_corpus.write_jsonl(out, "s", chunks) == sum(map(len, chunks))
    rows = [json.loads(x) for x in gzip.open(out, "rt")]
    assert [r["id"] for r in rows[:2]] == ["s-000000", "s-000001"]


def test_committed_te_records_back_the_readme() -> None:
    # The figures quoted in README/RESULTS come from these records.
    mbs8 = json.loads((RESULTS / "h200x2_te_1b_mbs8_record.json").read_text())
    assert mbs8["config"]["layer_spec"] == "transformer_engine"
    assert mbs8["config"]["switches"]["model.gradient_accumulation_fusion"]["value"] is False
    assert round(mbs8["summary"]["tflops_per_gpu"], 1) == 485.7
    assert mbs8["summary"]["tflops_per_gpu"] / 790 > 0.55
    phase1 = json.loads((RESULTS / "h200x2_phase1_1b_record.json").read_text())
    assert phase1["summary"]["iterations"] == 1800
    assert [x["start_iteration"] for x in phase1["launches"]] == [0, 1000]
    assert min(v["loss"] for v in phase1["valid"]) == pytest.approx(2.366, abs=1e-3)
    ratio = json.loads((RESULTS / "h200x2_te_compare_bare_mbs4.json").read_text())
    assert abs(ratio["pipe_over_bare"] - 1) < 0.02
