"""`pipe run`: builds stage by stage, reuses a full cache without Ray or heavy imports, refuses
what cannot run in one line; its progress bars fit 80 columns; `artifacts ls` piped."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, pipe, write_jsonl
from rich.console import Console

from pipeline.artifact import Outcome
from pipeline.cli import main
from pipeline.progress import Display, compact

HEAVY = ("torch", "transformers", "megatron", "ray", "nemo_curator")
BIG_8B = ["--model", "8b", "--tp", "1", "--nproc-per-node", "8", "--gpu-memory", "80"]


def small_blend(folder: Path, tokenizer: Path, curate: bool = False) -> Path:
    write_jsonl(folder / "a.jsonl.gz", 300, 11, "a")
    write_jsonl(folder / "b.jsonl", 200, 12, "b")
    datasets = [
        {"name": "a", "weight": 0.6, "files": "a.jsonl.gz"},
        {"name": "b", "weight": 0.4, "files": "b.jsonl"} | ({"curate": {}} if curate else {}),
    ]
    blend = folder / "blend.json"
    blend.write_text(json.dumps({"name": "t", "tokenizer": str(tokenizer), "datasets": datasets}))
    return blend


@pytest.fixture(scope="module")
def ran(small_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("run")
    blend, cache = small_blend(folder, small_tokenizer), folder / "cache"
    first = pipe("run", "--blend", blend, "--json", cache=cache)
    assert first.code == 0, first.err
    report = folder / "out" / "report.html"
    second = pipe("run", "--blend", blend, "--json", "--report", report, cache=cache)
    assert second.code == 0, second.err
    return {"blend": blend, "cache": cache, "first": first, "second": second, "report": report}


def test_run_builds_every_stage_in_order_with_lineage(ran: dict) -> None:
    arts = ran["first"].json["artifacts"]
    assert [a["stage"] for a in arts] == ["download"] * 2 + ["tokenize"] * 2 + ["megatron_blend"]
    assert not any(a["reused"] for a in arts)
    by = {(a["stage"], a["name"]): a for a in arts}
    assert by["tokenize", "a"]["parents"] == [by["download", "a"]["artifact"]]
    assert sorted(by["megatron_blend", "t"]["parents"]) == sorted(
        [by["tokenize", "a"]["artifact"], by["tokenize", "b"]["artifact"]]
    )
    assert Path(by["megatron_blend", "t"]["path"], "blend.json").is_file()
    err = ran["first"].err
    assert "download a: built" in err and "artifacts (lineage)" in err


def test_second_run_reuses_everything_and_says_so(ran: dict) -> None:
    second = ran["second"]
    assert second.json["reused"] is True
    assert [a["artifact"] for a in second.json["artifacts"]] == [
        a["artifact"] for a in ran["first"].json["artifacts"]
    ]
    assert second.err.count("reused from the cache") == 5


def test_report_is_written_at_the_end_and_named_last(
    ran: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--json names the page; the human output ends with `report: <absolute path>`."""
    assert ran["second"].json["report"] == str(ran["report"].resolve())
    page = ran["report"].read_text()
    keys = {a["stage"]: a["artifact"] for a in ran["second"].json["artifacts"]}
    assert "<h2>Document lengths</h2>" in page and keys["megatron_blend"] in page
    assert "not built yet" not in ran["second"].err
    monkeypatch.chdir(tmp_path)  # a relative --report is resolved against the working folder
    args = ["run", "--blend", str(ran["blend"]), "--cache-dir", str(ran["cache"]), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--report", "r.html"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"report: {tmp_path / 'r.html'}"
    assert "<h2>Lineage</h2>" in (tmp_path / "r.html").read_text()


def test_full_cache_starts_no_ray_and_imports_nothing_heavy(ran: dict) -> None:
    """The whole command in one process; then which heavy modules it had imported."""
    code = (
        "import sys, json\n"
        "from pipeline.cli import main\n"
        f"args = ['run', '--blend', {str(ran['blend'])!r}, '--cache-dir', "
        f"{str(ran['cache'])!r}, '--quiet']\n"
        "main(args, standalone_mode=False)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # ray not even imported


def test_until_download_builds_only_downloads(small_tokenizer: Path, tmp_path: Path) -> None:
    blend = small_blend(tmp_path, small_tokenizer)
    res = pipe("run", "--blend", blend, "--until", "download", "--limit", "50", "--json",
               cache=tmp_path / "c")  # fmt: skip
    assert res.code == 0, res.err
    assert {a["stage"] for a in res.json["artifacts"]} == {"download"}
    assert not (tmp_path / "c" / "tokenize").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--until", "curate"], "nothing to curate"),
        (["--model", "tiny"], "--model applies to training; add --until train"),
        (["k.x=1"], "KEY=VALUE overrides apply to training"),
        (["--until", "train", "train.train_itres=10"], "did you mean 'train_iters'"),
        (["--dry-run", "--report", "r.html"], "drop --report"),
        (["--gpu-memory", "80"], "--gpu-memory applies to training; add --until train"),
        (["--until", "train", *BIG_8B], "but a GPU has 80 GiB (--gpu-memory); "),
    ],
)
def test_refusals_are_one_line_before_any_work(
    small_tokenizer: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    blend = small_blend(tmp_path, small_tokenizer)
    cache = tmp_path / "c"
    result = CliRunner().invoke(main, ["run", "--blend", str(blend), "--cache-dir", str(cache),
                                       *args])  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], lines
    assert not (cache / "download").exists()


def test_until_train_checks_as_pipe_train_then_launches(
    small_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-memory-check lets the 8b plan through; the data is built, the token budget's warning
    is said on its real counts, and the run is launched (stood in for: there is no GPU)."""
    launched: list[dict] = []

    def fake_run(step, cache, ctx, fresh) -> Outcome:
        launched.append(step.runtime["plan"])
        return Outcome("train", step.key, tmp_path / step.key, {}, False, None)

    monkeypatch.setattr("pipeline.train.run", fake_run)
    blend = small_blend(tmp_path, small_tokenizer)
    args = ["run", "--blend", str(blend), "--cache-dir", str(tmp_path / "c"), "--until", "train"]
    result = CliRunner().invoke(main, [*args, *BIG_8B, "--no-memory-check", "--quiet"])
    assert result.exit_code == 0, result.stderr
    (plan,) = launched
    assert plan["model"] == "8b" and plan["tp"] == 1 and plan["blend_json"].endswith("blend.json")
    said = " ".join(result.stderr.split())
    assert "warning: the train data repeats" in said and "estimated" not in said


def test_run_help_explains_until_and_train_options() -> None:
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    for word in ("--until", "--dry-run", "--nproc-per-node", "KEY=VALUE", "train needs GPUs"):
        assert word in result.output


def _render(draw: callable) -> list[str]:
    buf = io.StringIO()
    display = Display(console=Console(file=buf, width=80, force_terminal=True))
    draw(display)
    frames = re.split(r"\x1b\[2K|\r|\n", buf.getvalue())  # each redraw erases the line
    return [p for f in frames if (p := re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", f)).strip()]


def test_bar_fits_80_columns_and_says_when_ray_starts() -> None:
    frames: list[str] = []

    def draw(display: Display) -> None:
        with display.bar("tokenize a-dataset-with-a-long-name", 149_936) as bar:
            with display.waiting("starting Ray"):
                bar.progress.refresh()
            time.sleep(0.05)
            bar.advance(149_936, 195_083_440)

    frames = _render(draw)
    assert any("starting Ray" in f for f in frames)
    assert not any("0 docs/s" in f for f in frames)
    assert all(len(f) <= 80 for f in frames), frames
    last = frames[-1]
    assert "150k/150k" in last and "docs/s" in last and "tok/s" in last


def test_waiting_without_a_bar_is_one_line() -> None:
    def draw(display: Display) -> None:
        with display.waiting("starting Ray"):
            pass

    assert _render(draw) == ["starting Ray ..."]


def test_compact_numbers() -> None:
    assert [compact(x) for x in (7, 1234, 12345, 123456, 886e6)] == [
        "7",
        "1.23k",
        "12.3k",
        "123k",
        "886M",
    ]


def test_artifacts_ls_piped_keeps_whole_keys(ran: dict) -> None:
    result = CliRunner().invoke(main, ["artifacts", "ls", "--cache-dir", str(ran["cache"])])
    assert result.exit_code == 0
    header, *rows = [line.split("\t") for line in result.output.strip().splitlines()]
    assert header == ["key", "stage", "name", "created", "MB", "parents"]
    keys = {a["artifact"] for a in ran["first"].json["artifacts"]}
    assert {r[0] for r in rows} == keys
    blend = next(r for r in rows if r[1] == "megatron_blend")
    assert set(blend[5].split(",")) <= keys and len(blend[5].split(",")) == 2
