"""Override keys are checked against Megatron-Bridge 0.6.2's real config fields, fast, with a
did-you-mean, before any data work (issue 11, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.entry import build_config
from training.overrides import FIELDS_FILE, OverrideError, bridge_fields, parse_overrides
from training.switches import Installed, decide

ROOT = Path(__file__).resolve().parent.parent


def test_table_is_bridge_062_and_covers_every_section() -> None:
    table = json.loads(FIELDS_FILE.read_text())
    assert table["megatron_bridge"] == "0.6.2" and table["megatron_core"] == "0.19.2"
    fields = bridge_fields()
    for section in (
        "train",
        "model",
        "optimizer",
        "scheduler",
        "dataset",
        "logger",
        "ddp",
        "checkpoint",
        "validation",
        "tokenizer",
        "rng",
        "dist",
        "comm_overlap",
    ):
        assert fields[section], section
    # GPTModelProvider inherits Megatron-Core's TransformerConfig: hundreds of fields.
    assert len(fields["model"]) > 300
    assert {"train_iters", "global_batch_size", "micro_batch_size", "exit_interval"} <= fields[
        "train"
    ]


def test_every_key_pipe_sets_is_a_real_field() -> None:
    # The switches the plan decides and the fields the entry sets by name must exist in Bridge.
    fields = bridge_fields()
    keys = [s.key for s in decide(Installed(True, True, True, True, True), tp=2, dp=2)]
    entry_source = (ROOT / "training" / "entry.py").read_text()
    for section in ("train", "validation", "optimizer", "scheduler", "dataset", "logger"):
        keys += [f"{section}.{name}" for name in _assigned(entry_source, f"cfg.{section}.")]
    assert len(keys) > 20
    for key in keys:
        section, name = key.split(".", 1)
        assert name in fields[section], key
    assert build_config.__name__  # the entry module imports without Bridge


def _assigned(source: str, prefix: str) -> set[str]:
    names = set()
    for line in source.splitlines():
        line = line.strip()
        if line.startswith(prefix) and "=" in line:
            names.add(line[len(prefix) :].split("=", 1)[0].strip())
    return names


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("train.train_itres=10", "train has no field 'train_itres'; did you mean 'train_iters'"),
        ("model.num_layer=4", "did you mean 'num_layers'"),
        ("optimizer.learning_rate=1e-3", "optimizer has no field 'learning_rate'"),
        ("trian.train_iters=3", "unknown section 'trian'; did you mean 'train'"),
        ("mixed_precision.fp8=e4m3", "use --precision"),
    ],
)
def test_misspelled_keys_are_refused_with_a_suggestion(arg: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message.replace("(", r"\(")):
        parse_overrides([arg])


def test_real_keys_pass_and_plus_keys_add() -> None:
    parsed = parse_overrides(
        [
            "train.train_iters=10",
            "model.cross_entropy_loss_fusion=false",
            "ddp.overlap_grad_reduce=true",
            "checkpoint.save=null",
            "comm_overlap.tp_comm_overlap=true",
            "+model.my_new_field=1",
        ]
    )
    assert [o.key for o in parsed][-1] == "model.my_new_field"


def test_cli_refuses_a_typo_in_under_a_second_before_any_data_work(tmp_path: Path) -> None:
    # The blend does not exist: the typo must be reported before pipe looks at any data.
    script = (
        "import sys, time; t = time.perf_counter()\n"
        "from pipeline.cli_train import train\n"
        "try:\n"
        "    train.main(['--blend', sys.argv[1], '--dry-run', 'train.train_itres=10'],"
        " standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(time.perf_counter() - t, file=sys.stderr)\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "did you mean 'train_iters'" in out.stderr
    assert "missing.json" not in out.stderr
    checked_in = float(out.stderr.strip().splitlines()[-1])
    assert checked_in < 1.0, checked_in
    assert time.perf_counter() - t0 < 30


def test_a_typo_names_the_table_and_its_bridge_version() -> None:
    with pytest.raises(OverrideError, match=r"Megatron-Bridge 0\.6\.2's config"):
        parse_overrides(["train.train_itres=10"])
