"""Show that bare_bridge.py and pipe train build the same Megatron-Bridge config.

Builds both ConfigContainers for the 1b, 1-GPU, 30-iteration run (pipe's through its real plan,
with the switches probed on this machine) and prints every field that differs, recursively.
Expected: only paths (run folders) and the unused save interval (both runs save nothing).
Usage (where Bridge imports): python3 training/gpu/diff_bare_config.py BLEND_JSON TOKENIZER MBS
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training.compat import allow_bridge_without_te  # noqa: E402


def plain(x: Any) -> str:
    """repr with tuples as lists (Bridge's override pass turns tuples into lists)."""
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(plain(v) for v in x) + "]"
    return repr(x)


def diff(a: Any, b: Any, path: str = "") -> list[tuple[str, str, str]]:
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x) and dataclasses.is_dataclass(y):
            out += diff(x, y, f"{path}{f.name}.")
        elif plain(x) != plain(y):
            out.append((f"{path}{f.name}", plain(x)[:120], plain(y)[:120]))
    return out


def main(blend_json: str, tokenizer: str, mbs: int) -> None:
    allow_bridge_without_te()
    import bare_bridge

    from training.entry import build_config
    from training.plan import DataSource, build_plan, place

    captured: list[Any] = []
    bare_bridge.pretrain = lambda cfg, step: captured.append(cfg)
    tmp = Path(tempfile.mkdtemp())
    bare_bridge.main(blend_json, tokenizer, str(tmp / "bare"), 30, mbs)
    data = DataSource(blend_json, tokenizer, 131072, 2, "diff")
    overrides = ["train.train_iters=30", f"train.micro_batch_size={mbs}", "checkpoint.save=null"]
    plan = build_plan(model="1b", data=data, nproc_per_node=1, overrides=overrides)
    pipe_cfg = build_config(place(plan, tmp / "pipe", "diff"))
    print(f"switches probed here: {plan.installed}")
    for key, bare, pipe in diff(captured[0], pipe_cfg):
        print(f"{key}: bare {bare} | pipe {pipe}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
