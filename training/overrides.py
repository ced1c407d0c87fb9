"""`KEY=VALUE` arguments: Megatron-Bridge dotlist overrides, checked before anything launches.

The GPU side hands the raw strings to Bridge's `process_config_with_overrides` (Hydra syntax);
here they are only parsed enough to catch typos early and to read the few values the launch plan
needs (batch sizes, heads, layers) so a bad layout is refused before torchrun starts.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Field names of Bridge's config sections, generated from the real dataclasses of the pinned
# Megatron-Bridge by training/gen_bridge_fields.py (Bridge cannot be installed everywhere pipe
# plans a run, and importing it takes seconds).
FIELDS_FILE = Path(__file__).with_name("bridge_fields.json")


@functools.cache
def _table() -> dict:
    return json.loads(FIELDS_FILE.read_text(encoding="utf-8"))


def bridge_fields() -> dict[str, frozenset[str]]:
    """{section: field names} of Megatron-Bridge's ConfigContainer, from the generated table."""
    return {k: frozenset(v) for k, v in _table()["sections"].items()}


def _table_note() -> str:
    """Where the names come from; says so when the installed Bridge is another version."""
    made_for = _table()["megatron_bridge"]
    try:
        installed = version("megatron-bridge")
    except PackageNotFoundError:
        installed = made_for
    note = f"fields of Megatron-Bridge {made_for}'s config, training/bridge_fields.json"
    if installed != made_for:
        note += (
            f"; Megatron-Bridge {installed} is installed here: regenerate the table with "
            f"python3 -m training.gen_bridge_fields training/bridge_fields.json"
        )
    return note


# Keys that a `pipe train` option or the data artifact owns: overriding them would make the
# launch plan lie (a different world layout, data or tokenizer than the one checked).
RESERVED = {
    "model.tensor_model_parallel_size": "use --tp",
    "model.pipeline_model_parallel_size": "use --pp",
    "model.vocab_size": "the vocabulary comes from the data's tokenizer",
    "mixed_precision": "use --precision",
    "dataset.blend": "use --blend",
    "dataset.blend_per_split": "use --blend",
    "dataset.split": "use --blend (splits come from blend.json)",
    "dataset.data_path": "use --blend",
    "tokenizer.tokenizer_model": "the tokenizer is the one the data was tokenized with",
    "tokenizer.tokenizer_type": "the tokenizer is the one the data was tokenized with",
}

_KEY = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class OverrideError(ValueError):
    """A `KEY=VALUE` argument that cannot be right."""


@dataclass(frozen=True)
class Override:
    """One dotlist override: the key (without Hydra's `+`), and the raw text Bridge receives."""

    key: str
    value: str
    text: str


def parse_overrides(args: list[str] | tuple[str, ...]) -> list[Override]:
    """Check each `KEY=VALUE`: a dotted key in a known section, not reserved, not repeated."""
    seen: set[str] = set()
    out: list[Override] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"{arg!r} is not KEY=VALUE (e.g. train.train_iters=5000)")
        if not _KEY.match(key):
            raise OverrideError(f"{key!r} is not a dotted key (e.g. train.global_batch_size)")
        bare = key.lstrip("+")
        if bare in RESERVED or bare.split(".", 1)[0] in RESERVED:
            reason = RESERVED.get(bare) or RESERVED[bare.split(".", 1)[0]]
            raise OverrideError(f"{key!r} cannot be overridden: {reason}")
        check_key(bare, adds=key.startswith("+"))
        if bare in seen:
            raise OverrideError(f"{key!r} is given twice")
        seen.add(bare)
        out.append(Override(key=bare, value=value.strip(), text=f"{key}={value.strip()}"))
    return out


def check_key(key: str, adds: bool = False) -> None:
    """`section.field` must name a real Bridge config field; a typo gets a did-you-mean.

    Hydra's `+key=value` adds a key, so only its section is checked. Deeper keys
    (`section.field.sub`) are checked down to the field.
    """
    fields = bridge_fields()
    section, _, rest = key.partition(".")
    if section not in fields:
        raise OverrideError(f"{key!r}: unknown section {section!r}{_did_you_mean(section, fields)}")
    if not rest:
        raise OverrideError(f"{key!r} names a whole section; set one field, e.g. {key}.X=Y")
    name = rest.split(".", 1)[0]
    if not adds and name not in fields[section]:
        raise OverrideError(
            f"{key!r}: {section} has no field {name!r}{_did_you_mean(name, fields[section])} "
            f"({_table_note()})"
        )


def _did_you_mean(name: str, choices: frozenset[str] | dict) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def parse_value(raw: str) -> int | float | bool | str | None:
    """The YAML-ish scalar Hydra would read: int, float, bool, null, else the string."""
    low = raw.lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def get_int(overrides: list[Override], key: str, default: int) -> int:
    """An integer override the plan needs, or the default; a non-integer is an error."""
    for o in overrides:
        if o.key == key:
            value = parse_value(o.value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise OverrideError(f"{key} must be an integer, got {o.value!r}")
            return value
    return default


def has(overrides: list[Override], key: str) -> bool:
    return any(o.key == key for o in overrides)
