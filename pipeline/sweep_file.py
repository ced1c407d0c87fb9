"""A sweep file: a base `pipe train` configuration and variants that each change one variable.

The file is JSON (committed ones live in training/sweeps/). Everything a person can get wrong in
it is refused here, naming the file and the variant, before any data or GPU work: unknown keys,
a variant that changes two variables or none, and override keys Bridge's config does not have
(the same check `pipe train` runs on its KEY=VALUE arguments).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from training.options import PRECISION_RECIPES
from training.overrides import OverrideError, parse_overrides
from training.presets import PRESETS
from util.errors import InputError

BASE = "base"
# `pipe train` options a variant may change (the rest of the base is overrides).
OPTIONS = ("model", "nproc_per_node", "tp", "pp", "precision")
BASE_KEYS = (*OPTIONS, "overrides", "blend", "mock")
# Variables that span several Bridge fields: full recompute needs its method and layer count,
# and a sequence length is the model's and the dataset's at once. Any other override key is a
# variable of its own.
KNOBS = {
    "activation checkpointing": (
        "model.recompute_granularity",
        "model.recompute_method",
        "model.recompute_num_layers",
        "model.recompute_modules",
    ),
    "learning rate": ("optimizer.lr", "optimizer.min_lr"),
    "warm-up": (
        "scheduler.lr_warmup_iters",
        "scheduler.lr_warmup_fraction",
        "scheduler.lr_warmup_samples",
        "scheduler.lr_warmup_init",
    ),
    "sequence length": ("model.seq_length", "dataset.seq_length"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepFileError(InputError):
    """A sweep file that cannot be run as written."""


@dataclass(frozen=True)
class Launch:
    """The `pipe train` arguments of one run of the sweep."""

    model: str = "1b"
    nproc_per_node: int | str = "auto"
    tp: int | None = None
    pp: int = 1
    precision: str = "bf16"
    overrides: tuple[str, ...] = ()

    def args(self) -> list[str]:
        """The same run as a `pipe train` command line (without --blend)."""
        out = ["--model", self.model, "--nproc-per-node", str(self.nproc_per_node)]
        if self.tp is not None:
            out += ["--tp", str(self.tp)]
        out += ["--pp", str(self.pp), "--precision", self.precision]
        return out + list(self.overrides)


@dataclass(frozen=True)
class Variant:
    """One run of the sweep: its name, the variable it changes (None for the base) and how."""

    name: str
    variable: str | None
    value: Any
    launch: Launch


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    blend: Path | None
    mock: bool
    variants: tuple[Variant, ...]  # the base first

    @property
    def base(self) -> Launch:
        return self.variants[0].launch


def knob_of(key: str) -> str:
    """The variable an option or override key belongs to."""
    bare = key.lstrip("+")
    return next((name for name, keys in KNOBS.items() if bare in keys), bare)


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; raises SweepFileError naming the file and the variant."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise SweepFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise SweepFileError(f"{path}: must hold one JSON object with base and variants")
    _known(path, "the file", raw, ("name", "about", BASE, "variants"))
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise SweepFileError(f"{path}: name {name!r} must be letters, digits, '.', '_' or '-'")
    base_raw, variants_raw = raw.get(BASE), raw.get("variants")
    if not isinstance(base_raw, dict):
        raise SweepFileError(f"{path}: 'base' must be an object of pipe train options")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise SweepFileError(f"{path}: 'variants' must map names to one change each")
    _known(path, "base", base_raw, BASE_KEYS)
    base = _launch(path, BASE, base_raw)
    blend = base_raw.get("blend")
    if blend is not None and not isinstance(blend, str):
        raise SweepFileError(f"{path}: base: blend must be a path (relative to the sweep file)")
    variants = [Variant(BASE, None, None, base)]
    for vname, change in variants_raw.items():
        variants.append(_variant(path, vname, change, base))
    return Sweep(
        name=name,
        path=path.resolve(),
        blend=(path.parent / blend).resolve() if blend else None,
        mock=bool(base_raw.get("mock", False)),
        variants=tuple(variants),
    )


def _known(path: Path, where: str, obj: dict, keys: tuple[str, ...]) -> None:
    unknown = sorted(set(obj) - set(keys))
    if unknown:
        raise SweepFileError(
            f"{path}: {where}: unknown key {unknown[0]!r}; known: {', '.join(keys)}"
        )


def _launch(path: Path, where: str, raw: dict) -> Launch:
    """The base's options and overrides, checked as `pipe train` would check them."""
    overrides = raw.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise SweepFileError(f"{path}: {where}: overrides must be a list of 'KEY=VALUE' strings")
    launch = Launch(overrides=tuple(overrides))
    for key in OPTIONS:
        if key in raw:
            launch = replace(launch, **{key: _option(path, where, key, raw[key])})
    _check_overrides(path, where, launch)
    return launch


def _option(path: Path, where: str, key: str, value: Any) -> Any:
    if key == "model" and value in PRESETS:
        return value
    if key == "precision" and value in PRECISION_RECIPES:
        return value
    if key == "nproc_per_node" and (value == "auto" or _positive(value)):
        return value
    if key in ("tp", "pp") and (_positive(value) or (key == "tp" and value is None)):
        return value
    choices = {"model": list(PRESETS), "precision": list(PRECISION_RECIPES)}.get(key)
    wanted = f"one of {choices}" if choices else "a positive integer"
    raise SweepFileError(f"{path}: {where}: {key} must be {wanted}, got {value!r}")


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_overrides(path: Path, where: str, launch: Launch) -> None:
    try:
        parse_overrides(launch.overrides)
    except OverrideError as e:
        raise SweepFileError(f"{path}: {where}: {e}") from None


def _variant(path: Path, name: str, change: Any, base: Launch) -> Variant:
    """Apply one variant's change to the base; it must change exactly one variable."""
    where = f"variant {name!r}"
    if name == BASE or not _NAME.match(name):
        raise SweepFileError(
            f"{path}: {where}: a variant's name is letters, digits, '.', '_' or '-', not 'base'"
        )
    if not isinstance(change, dict) or not change:
        raise SweepFileError(
            f"{path}: {where}: give the one change as an object, e.g. "
            f'{{"train.micro_batch_size": 4}} or {{"tp": 2}}'
        )
    knobs = sorted({knob_of(k) for k in change})
    if len(knobs) > 1:
        raise SweepFileError(
            f"{path}: {where}: changes {len(knobs)} variables ({', '.join(knobs)}); a variant "
            f"changes exactly one"
        )
    knob = knobs[0]
    value = next(iter(change.values())) if len(change) == 1 else dict(change)
    if knob in OPTIONS:
        launch = replace(base, **{knob: _option(path, where, knob, change[knob])})
        unchanged = launch == base
    else:
        kept = [o for o in base.overrides if knob_of(o.partition("=")[0].strip()) != knob]
        mine = [f"{k}={_text(path, where, k, v)}" for k, v in change.items()]
        launch = replace(base, overrides=(*kept, *mine))
        unchanged = sorted(set(base.overrides) - set(kept)) == sorted(mine)
        _check_overrides(path, where, launch)
    if unchanged:
        raise SweepFileError(f"{path}: {where}: sets {knob} as the base does; it changes nothing")
    return Variant(name, knob, value, launch)


def _text(path: Path, where: str, key: str, value: Any) -> str:
    """A JSON value as the dotlist text Hydra reads back to the same value."""
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str) and value:
        return value
    raise SweepFileError(
        f"{path}: {where}: {key} must be a number, a string, true/false or null, got {value!r}"
    )


def describe(v: Variant) -> str:
    """`variable=value` for people; the base says so."""
    if v.name == BASE:
        return "base"
    if isinstance(v.value, dict):
        return f"{v.variable}: " + " ".join(f"{k}={x}" for k, x in v.value.items())
    return f"{v.variable}={v.value}"
