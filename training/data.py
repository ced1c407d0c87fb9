"""blend.json -> Megatron's `blend_per_split`, read the way Megatron-Bridge reads it.

blend.json is `{"train": [w, prefix, ...], "valid": [...], "test": [...]}` with absolute
prefixes (the tokenize artifact writes it). Bridge's `get_blend_and_blend_per_split` turns each
list into `(prefixes, weights)` with megatron-core's `get_blend_from_list`; so does this module,
but an empty split becomes `None` (Megatron skips that split) where Bridge's reader would fail.
The checks here run before launch: a missing prefix found by rank 0 minutes into start-up costs
a whole allocation.
"""

from __future__ import annotations

import json
from pathlib import Path

SPLITS = ("train", "valid", "test")

Blend = tuple[list[str], list[float] | None]


class BlendFileError(ValueError):
    """blend.json is missing, malformed, or names data that is not there."""


def load_blend_json(path: str | Path) -> dict[str, list[str]]:
    """The per-split lists of blend.json as strings, each split present (empty if absent)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BlendFileError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise BlendFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or "train" not in raw:
        raise BlendFileError(f"{path}: expected an object with a 'train' list (and valid/test)")
    unknown = set(raw) - set(SPLITS)
    if unknown:
        raise BlendFileError(f"{path}: unknown split(s) {sorted(unknown)}; expected {SPLITS}")
    out: dict[str, list[str]] = {}
    for split in SPLITS:
        value = raw.get(split) or []
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list):
            raise BlendFileError(f"{path}: {split!r} must be a list of [weight, prefix, ...]")
        out[split] = [str(x) for x in value]
    if not out["train"]:
        raise BlendFileError(f"{path}: the train split is empty")
    return out


def pairs(items: list[str]) -> list[tuple[float | None, str]]:
    """(weight, prefix) pairs, read as megatron-core's get_blend_from_list reads the list:
    an even list of numbers and prefixes is weighted, anything else is prefixes alone."""
    if len(items) % 2 == 0:
        try:
            weights = [float(w) for w in items[0::2]]
        except ValueError:
            weights = None
        if weights is not None:
            return list(zip(weights, (p.strip() for p in items[1::2]), strict=True))
    return [(None, p.strip()) for p in items]


def check_blend_json(path: str | Path) -> dict[str, int]:
    """Every prefix absolute with its .bin and .idx, every weight positive; prefixes per split.

    Pure Python (no Megatron import), so `pipe train --dry-run` stays quick.
    """
    return _check(load_blend_json(path), path)


def _check(lists: dict[str, list[str]], path: str | Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for split in SPLITS:
        found = pairs(lists[split])
        for weight, prefix in found:
            if weight is not None and weight <= 0:
                raise BlendFileError(f"{path}: {split} weight {weight} for {prefix} is not > 0")
            if not Path(prefix).is_absolute():
                raise BlendFileError(f"{path}: {split} prefix {prefix!r} is not absolute")
            missing = [e for e in (".bin", ".idx") if not Path(prefix + e).is_file()]
            if missing:
                raise BlendFileError(f"{path}: {split} prefix {prefix} has no {'/'.join(missing)}")
        counts[split] = len(found)
    return counts


def blend_per_split(path: str | Path) -> list[Blend | None]:
    """[train, valid, test] for `GPTDatasetConfig.blend_per_split` (None = no data), checked."""
    from megatron.core.datasets.utils import get_blend_from_list

    lists = load_blend_json(path)
    _check(lists, path)
    return [get_blend_from_list(lists[s]) if lists[s] else None for s in SPLITS]
