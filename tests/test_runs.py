"""`pipe runs ls/compare`: real run records from GPU runs, compared and plotted on CPU.

The records in tests/fixtures/runs are copies of training/gpu/results: micro batch 2 and 4 in
bf16, and micro batch 4 in fp8, so micro batch and precision are what differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from run_fixtures import RECORDS, publish_run, record, work_run

from pipeline.cli import main
from pipeline.compare import PEAK_TFLOPS

OOM = (
    "$ torchrun --nproc_per_node=1 -m training.entry plan.json\n"
    'Traceback (most recent call last):\n  File "entry.py", line 1, in <module>\n'
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: training.entry FAILED\n"
)
BLEND = "b" * 20
STOPPED = "3" + "4" * 19  # shares its first digit with the failed run's key


def cli(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two published runs, one failed and one stopped early (both in .work), and a sweep."""
    root = tmp_path_factory.mktemp("runs-cache")
    publish_run(root, "1" * 20, record("mbs2", BLEND), [BLEND], ckpt_bytes=4096)
    publish_run(root, "2" * 20, record("mbs4", BLEND), [BLEND])
    short = record("fp8", BLEND)
    short["steps"], short["valid"] = short["steps"][:12], []
    short["summary"]["iterations"] = 12
    work_run(root, "3" * 20, short, log=OOM)
    work_run(root, STOPPED, record("tiny"), log="$ torchrun\niteration 25 done\n")
    (root / "sweeps").mkdir()
    variants = [
        {"name": "mbs=2", "variable": "model", "value": "x", "run_key": "1" * 20,
         "run_path": str(root / "train" / ("1" * 20)), "status": "done", "reason": None},
        {"name": "mbs=4", "variable": "model", "value": "y", "run_key": "2" * 20,
         "run_path": None, "status": "reused", "reason": None},
        {"name": "mbs=64", "variable": "model", "value": "z", "run_key": None, "run_path": None,
         "status": "failed", "reason": "global batch 16 is not divisible by micro batch 64"},
    ]  # fmt: skip
    sweep = {"sweep": "mbs", "file": "sweep.json", "base": {}, "variants": variants}
    (root / "sweeps" / "mbs.json").write_text(json.dumps(sweep))
    return root


def test_compare_records_finds_what_differs_and_the_figures() -> None:
    code, out, _ = cli("runs", "compare", RECORDS["mbs2"], RECORDS["mbs4"], RECORDS["fp8"],
                       "--json")  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert {"micro_batch_size", "precision", "mixed_precision"} <= set(result["differing"])
    assert "model" not in result["differing"] and "run_dir" not in result["differing"]
    assert result["matched"] == {"train_iteration": 30, "valid_iteration": 30}
    by_label = {r["label"]: r for r in result["runs"]}
    mbs4 = by_label["h200x2_te_1b_mbs4"]
    rec = json.loads(RECORDS["mbs4"].read_text())
    assert mbs4["differing"]["micro_batch_size"] == 4
    assert by_label["h200x2_te_1b_fp8_mbs4"]["differing"]["precision"] == "fp8"
    m = mbs4["metrics"]
    assert m["tokens_per_second"] == pytest.approx(rec["summary"]["tokens_per_second"])
    assert m["mfu"] == pytest.approx(rec["summary"]["tflops_per_gpu"] / PEAK_TFLOPS)
    assert m["train_loss"] == pytest.approx(rec["steps"][29]["loss"])
    assert m["valid_loss"] == pytest.approx(rec["valid"][-1]["loss"])
    assert m["startup_seconds"] == pytest.approx(rec["launches"][0]["startup_seconds"])


def test_compare_writes_png_plots(tmp_path: Path) -> None:
    code, out, _ = cli("runs", "compare", RECORDS["mbs2"], RECORDS["fp8"], "--plots", tmp_path)
    assert code == 0
    names = {"loss_vs_iteration", "loss_vs_tokens", "throughput", "memory"}
    assert {p.stem for p in tmp_path.iterdir()} == names
    for name in names:
        pixels = imread(tmp_path / f"{name}.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 10  # drawn
        assert f"plot: {tmp_path / name}.png" in out


def test_compare_table_highlights_differences_and_shows_failures(cache: Path) -> None:
    code, out, _ = cli("runs", "compare", "1111", "2222", "3333333", "--cache-dir", cache)
    assert code == 0
    assert "micro_batch_size" in out and "precision" in out
    assert "failed" in out and "OutOfMemoryError" in out
    assert "train loss @12" in out  # the last iteration all three reached


def test_compare_a_sweep_by_name_diffs_the_records_not_the_sweep(cache: Path) -> None:
    code, out, _ = cli("runs", "compare", "mbs", "--cache-dir", cache, "--json")
    assert code == 0
    result = json.loads(out)
    assert [r["label"] for r in result["runs"]] == ["mbs=2", "mbs=4", "mbs=64"]
    assert "micro_batch_size" in result["differing"] and "model" not in result["differing"]
    failed = result["runs"][2]
    assert failed["status"] == "failed" and "not divisible" in failed["reason"]
    assert all(v is None for v in failed["metrics"].values())
    assert result["runs"][0]["metrics"]["checkpoint_gib"] == pytest.approx(4096 / 1024**3)
    by_file = cli("runs", "compare", cache / "sweeps" / "mbs.json", "--cache-dir", cache, "--json")
    assert json.loads(by_file[1])["differing"] == result["differing"]


def test_ls_lists_published_failed_and_stopped_runs(cache: Path) -> None:
    code, out, _ = cli("runs", "ls", "--cache-dir", cache, "--json")
    assert code == 0
    rows = {r["run"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == {"1" * 20, "2" * 20, "3" * 20, STOPPED}
    assert rows["1" * 20]["status"] == "done"
    assert rows["1" * 20]["settings"]["batch"] == "16/2"
    assert rows["3" * 20]["status"] == "failed"
    assert rows["3" * 20]["reason"].startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert rows[STOPPED]["status"] == "unfinished"
    assert rows[STOPPED]["reason"].startswith("stopped at iteration 50")
    code, table, _ = cli("runs", "ls", "--cache-dir", cache)
    assert code == 0 and "failed" in table and "OutOfMemoryError" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuchrun",), "no run 'nosuchrun'"),
        (("3",), "ambiguous"),
        (("sweeps",), "not a run folder"),
    ],
)
def test_compare_errors_are_one_line(cache: Path, args: tuple, message: str) -> None:
    args = tuple(str(cache / a) if a.startswith("sweeps") else a for a in args)
    code, _, err = cli("runs", "compare", *args, "--cache-dir", cache)
    assert code == 1 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_compare_refuses_a_file_that_is_no_record(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"hello": 1}')
    code, _, err = cli("runs", "compare", bogus)
    assert code == 1 and "not a run record" in err
    code, _, err = cli("runs", "ls", "--cache-dir", tmp_path / "absent")
    assert code == 1 and "no artifact cache" in err


def test_plots_need_a_record(cache: Path, tmp_path: Path) -> None:
    sweep = {"variants": [{"name": "a", "status": "failed", "reason": "bad layout"}]}
    path = tmp_path / "only-failed.json"
    path.write_text(json.dumps(sweep))
    code, out, err = cli("runs", "compare", path, "--plots", tmp_path / "p", "--cache-dir", cache)
    assert code == 1 and "none of these runs has a record" in err


def test_failure_reason_is_one_reading_of_the_last_launch_log(tmp_path: Path) -> None:
    """An out-of-memory line wins over the errors other ranks raise after it; an earlier launch
    that failed does not make a later clean one failed; the sweep adds the stage's message."""
    from pipeline.sweep_record import failure_reason
    from training.launch import failure_in_log

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "launch-0.log").write_text(OOM)
    assert failure_in_log(tmp_path).startswith("torch.OutOfMemoryError: CUDA out of memory")
    (logs / "launch-1.log").write_text(
        OOM + "[rank1]: torch.distributed.DistBackendError: NCCL communicator was aborted\n"
    )
    (logs / "launch-2.log").write_text("iteration 10 | loss 5.1\n")
    (logs / "launch-10.log").write_text(OOM.replace("OutOfMemoryError: CUDA out of memory", "X"))
    # launch-10 is the last (by number, not name); no rank named an error: torchrun's line
    assert failure_in_log(tmp_path).startswith("torch.distributed.elastic.multiprocessing")
    (logs / "launch-10.log").unlink()
    assert failure_in_log(tmp_path) is None  # launch-2 is the last, and it did not fail
    (logs / "launch-2.log").unlink()
    assert failure_in_log(tmp_path).startswith("torch.OutOfMemoryError")  # launch-1: OOM first
    reason = failure_reason("training exited with code 1; see the log", tmp_path)
    assert reason.startswith("torch.OutOfMemoryError")
    assert "; training exited with code 1 (" in reason
    assert reason.endswith(f"(log: {logs / 'launch-1.log'})")
    assert failure_reason("refused", tmp_path / "none") == "refused"


def test_plots_tell_a_sweeps_dozen_runs_apart(tmp_path: Path) -> None:
    """A sweep compares 12 runs: each gets its own colour, the same in every plot (a run with no
    record keeps its place), and the loss legend sits beside the axes, not over the curves."""
    from matplotlib.colors import to_rgba

    from pipeline.plots import loss_curves, throughput_bars
    from pipeline.runs import Run

    rec = record("mbs4")
    runs = [Run(label=f"variant-{i}", status="done", record=rec) for i in range(12)]
    runs[1] = Run(label="refused", status="failed", reason="needs Blackwell")
    fig = loss_curves(runs)
    ax = fig.axes[0]
    trains = {line.get_label(): to_rgba(line.get_color()) for line in ax.lines
              if not line.get_label().startswith("_")}  # fmt: skip
    assert list(trains) == [r.label for r in runs if r.record]
    assert len(set(trains.values())) == 11
    bars = throughput_bars(runs).axes[0].patches
    assert [to_rgba(b.get_facecolor()) for b in bars][2:] == list(trains.values())[1:]
    fig.draw_without_rendering()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(trains)


def test_compare_a_sweep_record_brought_back_from_the_gpu_host(tmp_path: Path) -> None:
    """sweep.sh brings back the sweep record with `<variant>_record.json` beside it; its run
    paths name folders on the GPU host, so the records beside it are the runs."""
    variants = [
        {"name": "base", "variable": None, "value": None, "run_key": "a" * 20,
         "run_path": "/tmp/pipe-gpu/cache/train/" + "a" * 20, "status": "reused", "reason": None},
        {"name": "fp8", "variable": "precision", "value": "fp8", "run_key": "b" * 20,
         "run_path": "/tmp/pipe-gpu/cache/train/" + "b" * 20, "status": "done", "reason": None},
        {"name": "nvfp4", "variable": "precision", "value": "nvfp4", "run_key": None,
         "run_path": None, "status": "failed", "reason": "nvfp4 needs a Blackwell GPU"},
    ]  # fmt: skip
    (tmp_path / "sweep_x.json").write_text(json.dumps({"sweep": "x", "variants": variants}))
    (tmp_path / "base_record.json").write_text(RECORDS["mbs4"].read_text())
    (tmp_path / "fp8_record.json").write_text(RECORDS["fp8"].read_text())
    (tmp_path / "nvfp4_record.json").write_text(RECORDS["tiny"].read_text())  # never launched
    code, out, _ = cli("runs", "compare", tmp_path / "sweep_x.json", "--json",
                       "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert code == 0
    result = json.loads(out)
    rows = {r["label"]: r for r in result["runs"]}
    assert [rows[k]["status"] for k in ("base", "fp8", "nvfp4")] == ["done", "done", "failed"]
    assert rows["base"]["key"] == "a" * 20 and rows["fp8"]["differing"]["precision"] == "fp8"
    fp8 = json.loads(RECORDS["fp8"].read_text())["summary"]
    assert rows["fp8"]["metrics"]["tokens_per_second"] == pytest.approx(fp8["tokens_per_second"])
    assert rows["fp8"]["sweep"] == {"variable": "precision", "value": "fp8"}
    assert rows["nvfp4"]["reason"] == "nvfp4 needs a Blackwell GPU"
    assert rows["nvfp4"]["metrics"]["tokens_per_second"] is None
