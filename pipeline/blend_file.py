"""Blend files: what to prepare, loaded into typed objects and refused early when wrong.

Every refusal names the file, the key and the fix, because a blend is hand-written and the
first run of a long job is the worst moment to find a typo.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.curate_config import CurateConfigError
from stages.curate_config import normalize as normalize_curate
from util.errors import PipeError

FORMATS = ("jsonl", "parquet", "txt")
BLEND_KEYS = {"name", "tokenizer", "split", "datasets", "description"}
DATASET_KEYS = {
    "name",
    "weight",
    "text_field",
    "id_field",
    "hf",
    "files",
    "format",
    "curate",
    "description",
}
HF_KEYS = {"path", "name", "split", "revision", "data_files"}
SPLIT_KEYS = {"valid", "test"}
DEFAULT_TOKENIZER = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face `datasets` source, streamed."""

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a blend: where its text comes from and its share of training samples."""

    name: str
    weight: float
    text_field: str = "text"
    id_field: str = "id"
    hf: HFSource | None = None
    files: str | None = None  # absolute glob, resolved against the blend file's folder
    format: str | None = None
    curate: dict[str, Any] | None = None


@dataclass(frozen=True)
class BlendFile:
    """A whole blend file, validated."""

    path: Path
    name: str
    tokenizer: str
    valid: float
    test: float
    datasets: tuple[DatasetSpec, ...] = field(default_factory=tuple)


def load_blend(path: str | Path) -> BlendFile:
    """Read and validate a blend file; raise PipeError naming the file, key and fix."""
    path = Path(path)
    if not path.is_file():
        raise PipeError(f"{path}: blend file not found (pass --blend with a path to a .json file)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipeError(f"{path}: not valid JSON ({e})") from None
    return parse_blend(raw, path)


def parse_blend(raw: Any, path: Path) -> BlendFile:
    """Validate an already-parsed blend object; `path` anchors relative paths and messages."""
    where = str(path)
    if not isinstance(raw, dict):
        raise PipeError(f"{where}: top level must be a JSON object with 'name' and 'datasets'")
    _no_unknown(raw, BLEND_KEYS, where, "")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise PipeError(f"{where}: key 'name' must be a non-empty string")
    tokenizer = raw.get("tokenizer", DEFAULT_TOKENIZER)
    if not isinstance(tokenizer, str) or not tokenizer:
        raise PipeError(f"{where}: key 'tokenizer' must be a hub id or a local folder path")
    local = path.parent / tokenizer
    if tokenizer.startswith(".") or local.is_dir():
        tokenizer = str(local.resolve())  # a folder is relative to the blend file, like 'files'
    valid, test = _parse_split(raw.get("split", {"valid": 0.005, "test": 0.005}), where)
    datasets = raw.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise PipeError(f"{where}: key 'datasets' must be a non-empty list of dataset objects")
    specs = tuple(_parse_dataset(d, i, path) for i, d in enumerate(datasets))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PipeError(f"{where}: datasets[].name must be unique; repeated: {', '.join(dupes)}")
    return BlendFile(path.resolve(), name, tokenizer, valid, test, specs)


def _parse_split(split: Any, where: str) -> tuple[float, float]:
    if not isinstance(split, dict):
        raise PipeError(
            f'{where}: key \'split\' must be an object like {{"valid": 0.005, "test": 0.005}}'
        )
    _no_unknown(split, SPLIT_KEYS, where, "split.")
    fractions = []
    for key in ("valid", "test"):
        value = split.get(key, 0.0)
        if not _is_number(value) or not 0 <= value < 1:
            raise PipeError(
                f"{where}: key 'split.{key}' must be a fraction in [0, 1), "
                f"got {value!r} (e.g. 0.005)"
            )
        fractions.append(float(value))
    if sum(fractions) >= 0.5:
        raise PipeError(
            f"{where}: key 'split': valid + test = {sum(fractions):g} leaves too "
            f"little for train; keep it below 0.5"
        )
    return fractions[0], fractions[1]


def _parse_dataset(raw: Any, i: int, blend_path: Path) -> DatasetSpec:
    where = f"{blend_path}: datasets[{i}]"
    if not isinstance(raw, dict):
        raise PipeError(f"{where} must be an object with 'name', 'weight' and 'hf' or 'files'")
    _no_unknown(raw, DATASET_KEYS, str(blend_path), f"datasets[{i}].")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise PipeError(f"{where}.name must be a plain non-empty string (no '/'), got {name!r}")
    where = f"{blend_path}: datasets[{i}] ({name})"
    weight = raw.get("weight", 1.0)
    if not _is_number(weight) or not weight > 0 or not math.isfinite(weight):
        raise PipeError(
            f"{where}.weight must be a number > 0, got {weight!r}; "
            f"drop the dataset instead of giving it weight 0"
        )
    for key in ("text_field", "id_field"):
        if not isinstance(raw.get(key, "x"), str):
            raise PipeError(f"{where}.{key} must be a column name (string)")
    has_hf, has_files = "hf" in raw, "files" in raw
    if has_hf == has_files:
        raise PipeError(
            f"{where}: give exactly one source, 'hf' (a hub dataset) or 'files' "
            f"(a path or glob of jsonl/parquet/txt)"
        )
    hf, files, fmt = None, None, None
    if has_hf:
        hf = _parse_hf(raw["hf"], where, blend_path)
        if "format" in raw:
            raise PipeError(f"{where}.format applies to 'files' sources only; remove it")
    else:
        files, fmt = _parse_files(raw["files"], raw.get("format"), where, blend_path)
    curate = _parse_curate(raw.get("curate"), where)
    return DatasetSpec(
        name=name,
        weight=float(weight),
        text_field=raw.get("text_field", "text"),
        id_field=raw.get("id_field", "id"),
        hf=hf,
        files=files,
        format=fmt,
        curate=curate,
    )


def _parse_curate(raw: Any, where: str) -> dict[str, Any] | None:
    """Full curation settings (defaults filled in), or None when the dataset is not curated."""
    if raw is None or raw is False:
        return None
    try:
        return normalize_curate(raw)
    except CurateConfigError as e:
        key = f".curate.{e.key}" if e.key else ".curate"
        raise PipeError(
            f'{where}{key}: {e} (e.g. "curate": {{"filters": {{"word_count": {{"min": 50}}}}, '
            f'"exact_dedup": true, "fuzzy_dedup": {{"threshold": 0.8}}}})'
        ) from None


def _parse_hf(raw: Any, where: str, blend_path: Path) -> HFSource:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        raise PipeError(
            f"{where}.hf must be an object with at least 'path' "
            f'(e.g. {{"path": "HuggingFaceFW/fineweb-edu", "split": "train"}})'
        )
    _no_unknown(raw, HF_KEYS, str(blend_path), f"{where.split(': ', 1)[1]}.hf.")
    path = raw["path"]
    local = (blend_path.parent / path) if not Path(path).is_absolute() else Path(path)
    if path.startswith((".", "/")) and not local.exists():
        raise PipeError(f"{where}.hf.path: local folder {local} does not exist")
    if local.exists():
        path = str(local.resolve())
    return HFSource(
        path=path,
        name=raw.get("name"),
        split=raw.get("split", "train"),
        revision=raw.get("revision"),
        data_files=raw.get("data_files"),
    )


def _parse_files(files: Any, fmt: Any, where: str, blend_path: Path) -> tuple[str, str]:
    if not isinstance(files, str) or not files:
        raise PipeError(f"{where}.files must be a path or glob string")
    pattern = files if Path(files).is_absolute() else str(blend_path.parent / files)
    if fmt is None:
        fmt = guess_format(pattern)
    if fmt not in FORMATS:
        raise PipeError(f"{where}.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return pattern, fmt


def guess_format(pattern: str) -> str | None:
    """Format from the file name: .jsonl/.json(.gz), .parquet, .txt."""
    name = pattern.lower().removesuffix(".gz")
    for suffix, fmt in (
        (".jsonl", "jsonl"),
        (".json", "jsonl"),
        (".parquet", "parquet"),
        (".txt", "txt"),
    ):
        if name.endswith(suffix):
            return fmt
    return None


def _no_unknown(raw: dict, allowed: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PipeError(
            f"{where}: unknown key '{prefix}{unknown[0]}'; allowed keys are "
            f"{', '.join(sorted(allowed))}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
