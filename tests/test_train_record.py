"""The run record: JSON lines from every launch of a run -> record.json with the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import record

PLAN = {"tokens_per_iteration": 2048, "world_size": 2, "model": "tiny"}


def write_run(run: Path) -> None:
    folder = run / record.RECORD_DIR
    folder.mkdir(parents=True)
    meta = {"tokens_per_iteration": 2048, "flops_per_iteration": 4e12, "world_size": 2}
    record.append_line(folder / record.META, meta | {"launch": 0, "start_iteration": 0})
    # First launch: iterations 1..6, the last two of which are lost (no checkpoint after 4).
    for i in range(1, 7):
        record.append_line(
            folder / record.STEPS,
            {"iteration": i, "launch": 0, "seconds": 5.0 if i <= 3 else 1.0, "loss": 10.0 - i},
        )
    record.append_line(folder / record.VALID, {"iteration": 4, "loss": 6.5})
    # Second launch resumes from the checkpoint at 4: redoes 5 and 6, then 7..10.
    record.append_line(folder / record.META, meta | {"launch": 1, "start_iteration": 4})
    for i in range(5, 11):
        record.append_line(
            folder / record.STEPS,
            {"iteration": i, "launch": 1, "seconds": 9.0 if i <= 7 else 2.0, "loss": 9.5 - i},
        )
    with open(folder / record.STEPS, "a") as f:
        f.write('{"iteration": 11, "sec')  # killed mid-write
    record.append_line(folder / record.VALID, {"iteration": 10, "loss": 0.25})
    for rank, peak in ((0, 3 << 30), (1, 5 << 30)):
        record.write_json(
            folder / f"memory-rank{rank}.json",
            {"rank": rank, "max_allocated_bytes": peak, "max_reserved_bytes": peak + (1 << 30)},
        )


def test_assemble_merges_launches_and_computes_figures(tmp_path: Path) -> None:
    write_run(tmp_path)
    rec = record.assemble(tmp_path, PLAN)
    assert json.loads((tmp_path / record.RECORD_FILE).read_text()) == rec
    steps = rec["steps"]
    assert [s["iteration"] for s in steps] == list(range(1, 11))
    # The redone iterations keep the resumed launch's line.
    assert steps[4]["launch"] == 1 and steps[4]["loss"] == pytest.approx(4.5)
    s = rec["summary"]
    assert s["iterations"] == 10
    # Warm-up: the first 3 steps of each launch are left out of the timing.
    assert s["timed_iterations"] == 1 + 3
    assert s["seconds_per_iteration"] == pytest.approx((1.0 + 2.0 * 3) / 4)
    assert s["tokens_per_second"] == pytest.approx(2048 / 1.75)
    assert s["tflops_per_gpu"] == pytest.approx(4e12 / 1.75 / 2 / 1e12)
    assert steps[-1]["tflops_per_gpu"] == pytest.approx(1.0)
    assert (s["first_loss"], s["last_loss"], s["last_valid_loss"]) == (9.0, -0.5, 0.25)
    assert s["peak_memory_allocated_gib"] == 5.0 and s["peak_memory_reserved_gib"] == 6.0
    assert [launch["start_iteration"] for launch in rec["launches"]] == [0, 4]


def test_short_launches_are_timed_whole(tmp_path: Path) -> None:
    steps = [{"iteration": i, "launch": 0, "seconds": 1.0} for i in (1, 2)]
    assert record.steady(steps) == steps


def test_empty_run_has_an_empty_record(tmp_path: Path) -> None:
    rec = record.assemble(tmp_path, PLAN)
    assert rec["summary"] == {"iterations": 0} and rec["steps"] == []
