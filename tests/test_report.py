"""`pipe report`: an HTML page about a self-made blend, tokenized here, and runs trained on it.

The runs are real records kept from GPU runs (tests/fixtures/runs), published into the test
cache with the blend as their parent. The page is opened in headless Chromium, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_tokenizer, pipe, write_jsonl
from matplotlib.image import imread
from run_fixtures import publish_run, record, work_run

from pipeline.artifact import Artifact
from pipeline.cli import main
from pipeline.lineage import Lineage, Node
from pipeline.report_page import render

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-check', `images=${imgs.length} broken=${broken}`);
});
</script>"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A two-dataset blend tokenized by `pipe tokenize`, two finished runs and a failed one."""
    tmp = tmp_path_factory.mktemp("report")
    make_tokenizer(tmp / "tok")
    write_jsonl(tmp / "alpha.jsonl", 300, 1, "alpha")
    write_jsonl(tmp / "beta.jsonl", 200, 2, "beta")
    blend = tmp / "blend.json"
    blend.write_text(
        json.dumps(
            {
                "name": "made",
                "tokenizer": "tok",
                "split": {"valid": 0.02, "test": 0.02},
                "datasets": [
                    {"name": "alpha", "weight": 0.75, "files": "alpha.jsonl"},
                    {"name": "beta", "weight": 0.25, "files": "beta.jsonl"},
                ],
            }
        )
    )
    cache = tmp / "cache"
    res = pipe("tokenize", "--blend", blend, "--json", "--quiet", cache=cache)
    assert res.code == 0, res.err
    key = res.json["artifact"]
    publish_run(cache, "1" * 20, record("mbs2", key), [key])
    publish_run(cache, "2" * 20, record("mbs4", key), [key])
    failed = record("fp8", key)
    work_run(cache, "3" * 20, failed, log="Traceback (most recent call last):\nValueError: x\n")
    return {"tmp": tmp, "blend": blend, "cache": cache, "key": key}


@pytest.fixture(scope="module")
def report(made: dict) -> dict:
    """`pipe report --blend` run as a user runs it: its --json, and the page it wrote."""
    out = made["tmp"] / "r" / "report.html"
    res = pipe("report", "--blend", made["blend"], "-o", out, "--json", cache=made["cache"])
    assert res.code == 0, res.err
    return res.json | {"out": out}


def cli(*args: str | Path) -> tuple[int, str, str]:
    """The same command in this process (its imports paid once), for the quicker cases."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def test_report_of_a_blend_file(report: dict) -> None:
    info, out = report, report["out"]
    assert info["report"] == str(out) and info["title"] == "made" and info["missing"] == []
    stages = [a["stage"] for a in info["artifacts"]]
    assert stages == ["download", "download", "tokenize", "tokenize", "megatron_blend"]
    assert {r["run"]: r["status"] for r in info["runs"]} == {
        "1" * 20: "done",
        "2" * 20: "done",
        "3" * 20: "failed",
    }
    assert info["plots"] == 5  # length histogram, loss x2, throughput, memory
    page = out.read_text()
    assert "<title>pipe report: made</title>" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched
    assert "75.0%" in page and "25.0%" in page  # sampling shares from blend.json
    assert "micro_batch_size" in page and "ValueError: x" in page
    assert "No dataset of this blend is curated" in page


def test_report_by_key_reads_lineage_back(made: dict, report: dict) -> None:
    """A run's key: its blend and that blend's ancestors and other runs, as from the file."""
    out = made["tmp"] / "by-key.html"
    code, stdout, err = cli("report", "2222", "-o", out, "--json", "--cache-dir", made["cache"])
    assert code == 0, err
    info = json.loads(stdout)
    assert info["artifacts"] == report["artifacts"] and info["runs"] == report["runs"]


def test_report_says_what_is_not_built(made: dict) -> None:
    out = made["tmp"] / "unbuilt.html"
    args = ("--blend", made["blend"], "--limit", "7", "-o", out, "--cache-dir", made["cache"])
    code, _, err = cli("report", *args)
    assert code == 0, err
    assert "not built yet: download alpha, download beta, tokenize alpha" in err
    page = out.read_text()
    assert "Not built yet" in page and "No dataset is tokenized yet" in page
    assert "No training run of this data yet" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name what to report on"),
        (("--blend", "BLEND", "abc"), "name what to report on"),
        (("zzzz",), "no artifact with key 'zzzz'"),
        (("abc", "--limit", "3"), "--limit/--tokenizer select a blend file"),
        (("--blend", "missing.json"), "blend file not found"),
    ],
)
def test_report_errors_are_one_line(made: dict, args: tuple, message: str) -> None:
    args = tuple(made["blend"] if a == "BLEND" else a for a in args)
    code, _, err = cli("report", *args, "-o", made["tmp"] / "x.html", "--cache-dir", made["cache"])
    assert code == 1 and message in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_report_without_a_cache(tmp_path: Path) -> None:
    code, _, err = cli("report", "abc", "--cache-dir", tmp_path / "absent")
    assert code == 1 and "no artifact cache" in err


def test_curation_section_from_a_real_curate_manifest(tmp_path: Path) -> None:
    """The manifest `pipe curate` wrote for the planted corpus (tests/curate_corpus.py)."""
    manifest = json.loads((FIXTURES / "curate_planted_manifest.json").read_text())
    art = Artifact(manifest["key"], "curate", tmp_path, manifest)
    node = Node("curate", "planted", art.key, tuple(manifest["parents"]), art)
    page = render(Lineage("planted", [node], []))
    for step in manifest["stats"]["removed"]:
        assert f"<td>{step['step']}</td><td class='n'>{step['docs']}</td>" in page
    assert "alt='curation removals per step'" in page
    assert "No dataset is tokenized yet" in page


def _chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args,
               page.as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_report_opens_in_chromium(report: dict, tmp_path: Path) -> None:
    chromium = _chromium()
    out = report["out"]
    shot = tmp_path / "report.png"
    _browse(chromium, out, tmp_path / "profile", "--window-size=1200,2400", f"--screenshot={shot}")
    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1200)
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 50  # not blank
    # The same page with a checker that reports every <img> decoded (naturalWidth > 0).
    checked = tmp_path / "checked.html"
    checked.write_text(out.read_text().replace("</body>", CHECK + "</body>"))
    dom = _browse(chromium, checked, tmp_path / "profile", "--dump-dom").stdout
    assert "<title>pipe report: made</title>" in dom
    assert 'data-check="images=5 broken=0"' in dom
    # The checker itself tells a broken image from a good one.
    broken = tmp_path / "broken.html"
    broken.write_text(checked.read_text().replace("base64,iVBOR", "base64,XXXX", 1))
    dom = _browse(chromium, broken, tmp_path / "profile", "--dump-dom").stdout
    assert 'data-check="images=5 broken=1"' in dom
