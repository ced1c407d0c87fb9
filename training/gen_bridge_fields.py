"""Generate training/bridge_fields.json: the field names of Megatron-Bridge's config sections.

`pipe train` checks `KEY=VALUE` overrides against this table before any data work, in
milliseconds, on machines where Bridge cannot be installed (it needs glibc 2.39). The table is
read from the real config objects: `vanilla_gpt_pretrain_config()` (the recipe the entry
starts from) gives each section's class (e.g. `model` is a `GPTModelProvider`, 300+ fields
inherited from Megatron-Core's `TransformerConfig`); sections the recipe leaves `None` (ft,
comm_overlap, ...) take the dataclass named by `ConfigContainer`'s type hints.

Regenerate after changing the pinned Bridge version, where Bridge imports (the GPU image, or
here with Bridge's wheels unpacked on PYTHONPATH, see training/README.md):
    python3 -m training.gen_bridge_fields training/bridge_fields.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from importlib.metadata import version
from typing import Any


def dataclass_in(hint: Any) -> type | None:
    """The dataclass a type hint names, looking inside Optional/Union."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    for arg in typing.get_args(hint):
        found = dataclass_in(arg)
        if found is not None:
            return found
    return None


def section_fields() -> dict[str, list[str]]:
    """{section: sorted public field names} for every dataclass section of the recipe's config."""
    from training.compat import allow_bridge_without_te

    allow_bridge_without_te()
    from megatron.bridge.recipes.gpt.vanilla_gpt import vanilla_gpt_pretrain_config
    from megatron.bridge.training.config import ConfigContainer

    cfg = vanilla_gpt_pretrain_config()
    hints = typing.get_type_hints(ConfigContainer)
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(ConfigContainer):
        if f.name.startswith("_"):
            continue
        value = getattr(cfg, f.name)
        cls = type(value) if dataclasses.is_dataclass(value) else dataclass_in(hints[f.name])
        if cls is None:
            continue  # plain values (mixed_precision as a name, env_vars as a dict)
        out[f.name] = sorted(x.name for x in dataclasses.fields(cls) if not x.name.startswith("_"))
    return out


def main(path: str) -> None:
    """Write the table to `path` (not stdout: Bridge's imports print there)."""
    table = {
        "megatron_bridge": version("megatron-bridge"),
        "megatron_core": version("megatron-core"),
        "generated_by": "python3 -m training.gen_bridge_fields training/bridge_fields.json",
        "sections": section_fields(),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
