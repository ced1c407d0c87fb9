"""`KEY=VALUE` arguments: Megatron-Bridge dotlist overrides, checked before anything launches.

The GPU side hands the raw strings to Bridge's `process_config_with_overrides` (Hydra syntax);
here they are only parsed enough to catch typos early and to read the few values the launch plan
needs (batch sizes, heads, layers) so a bad layout is refused before torchrun starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Top-level fields of Megatron-Bridge's ConfigContainer that a user may override.
SECTIONS = frozenset(
    {
        "train",
        "model",
        "optimizer",
        "scheduler",
        "dataset",
        "logger",
        "tokenizer",
        "checkpoint",
        "ddp",
        "validation",
        "rng",
        "dist",
        "profiling",
        "ft",
        "straggler",
        "nvrx_straggler",
        "comm_overlap",
        "rerun_state_machine",
        "inprocess_restart",
        "tensor_inspect",
    }
)

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
        section = bare.split(".", 1)[0]
        if section not in SECTIONS:
            known = ", ".join(sorted(SECTIONS))
            raise OverrideError(f"{key!r}: unknown section {section!r}; known: {known}")
        if "." not in bare:
            raise OverrideError(f"{key!r} names a whole section; set one field, e.g. {bare}.X=Y")
        if bare in RESERVED:
            raise OverrideError(f"{key!r} cannot be overridden: {RESERVED[bare]}")
        if bare in seen:
            raise OverrideError(f"{key!r} is given twice")
        seen.add(bare)
        out.append(Override(key=bare, value=value.strip(), text=f"{key}={value.strip()}"))
    return out


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
