"""Blend files are refused early, with the file, the key and the fix in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, pipe

from pipeline.blend_file import load_blend
from util.errors import PipeError

GOOD = {
    "name": "t",
    "tokenizer": "some/hub-id",
    "split": {"valid": 0.01, "test": 0.01},
    "datasets": [{"name": "a", "weight": 1.0, "files": "a.jsonl"}],
}


def _write(tmp_path: Path, blend: dict) -> Path:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(blend))
    return path


def _with(**changes: object) -> dict:
    blend = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        target = blend
        *parents, last = dotted.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return blend


def test_good_blend_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    blend = load_blend(_write(tmp_path, GOOD))
    (ds,) = blend.datasets
    assert ds.files == str(tmp_path / "a.jsonl") and ds.format == "jsonl"
    assert blend.valid == 0.01 and blend.tokenizer == "some/hub-id"


def test_shipped_blends_are_valid() -> None:
    for path in sorted((ROOT / "blends").glob("*.json")):
        assert load_blend(path).datasets


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"datasets__0__wieght": 1}, "unknown key 'datasets[0].wieght'"),
        ({"datasets__0__files": None}, "give exactly one source"),
        ({"datasets__0__hf": {"path": "x/y"}}, "give exactly one source"),
        ({"datasets__0__weight": 0}, "weight must be a number > 0"),
        ({"datasets__0__weight": -1}, "weight must be a number > 0"),
        ({"datasets__0__weight": "heavy"}, "weight must be a number > 0"),
        ({"split__valid": 1.5}, "'split.valid' must be a fraction in [0, 1)"),
        ({"split__test": -0.1}, "'split.test' must be a fraction in [0, 1)"),
        ({"split": {"valid": 0.3, "test": 0.3}}, "leaves too little for train"),
        ({"split": {"train": 0.9}}, "unknown key 'split.train'"),
        ({"datasets": []}, "'datasets' must be a non-empty list"),
        ({"datasets__0__format": "csv"}, "format must be one of jsonl, parquet, txt"),
        (
            {"datasets__0__hf": {"path": "x/y", "splt": "train"}, "datasets__0__files": None},
            "unknown key 'datasets[0] (a).hf.splt'",
        ),
    ],
)
def test_invalid_blend_is_refused_naming_file_and_key(
    tmp_path: Path, changes: dict, expected: str
) -> None:
    path = _write(tmp_path, _with(**changes))
    with pytest.raises(PipeError) as err:
        load_blend(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_duplicate_dataset_names_are_refused(tmp_path: Path) -> None:
    blend = _with()
    blend["datasets"].append(dict(blend["datasets"][0]))
    with pytest.raises(PipeError, match="repeated: a"):
        load_blend(_write(tmp_path, blend))


def test_cli_reports_bad_blend_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _with(datasets__0__weight=0))
    res = pipe("download", "--blend", path, cache=tmp_path / "cache")
    assert res.code == 1
    assert res.err.count("\n") == 1 and "Traceback" not in res.err
    assert f"{path}: datasets[0] (a).weight must be a number > 0" in res.err


def test_missing_blend_and_malformed_json(tmp_path: Path) -> None:
    res = pipe("download", "--blend", tmp_path / "nope.json", cache=tmp_path / "cache")
    assert res.code == 1 and "blend file not found" in res.err
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    res = pipe("download", "--blend", bad, cache=tmp_path / "cache")
    assert res.code == 1 and "not valid JSON" in res.err and "Traceback" not in res.err
