"""Megatron blend stage: the tokenize artifacts of a blend file -> blend.json for Megatron.

Config (what keys it): the blend file's name, dataset weights and split fractions; parents: one
tokenize artifact per dataset. blend.json is Megatron's per-split form (what Megatron-Bridge
reads as `per_split_data_args_path`), listing only non-empty prefixes; a dataset's weight is its
blend weight normalised per split, so its share of samples follows the blend file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stages.base import Context
from stages.splits import SPLITS
from util.errors import PipeError
from util.faults import maybe_die

NAME = "megatron_blend"
VERSION = 2
RESUMABLE = False
LINKS_PARENTS = True  # blend.json names the tokenize artifacts' files: whole only while they are
COLUMNS = ("split", "datasets", "docs", "tokens")
BLEND_JSON = "blend.json"


def build(parents: list, config: dict[str, Any], work: Path, ctx: Context) -> dict[str, Any]:
    weights, fractions = config["weights"], {"train": 1.0} | config["split"]
    per_split: dict[str, list] = {}
    stats: dict[str, Any] = {
        "tokenizer": parents[0].manifest["stats"]["tokenizer"],
        "links": [str(t.path) for t in parents],
    }
    for split in SPLITS:
        entries = [t for t in parents if t.manifest["stats"][split]["docs"] > 0]
        if fractions[split] > 0 and not entries:
            raise PipeError(
                f"split {split!r} has no documents in any dataset of "
                f"{config['blend_file']}; raise --limit or set split.{split} to 0"
            )
        total = sum(weights[t.manifest["name"]] for t in entries)
        per_split[split] = [
            x
            for t in entries
            for x in (round(weights[t.manifest["name"]] / total, 6), str(t.path / split))
        ]
        stats[split] = {t.manifest["name"]: t.manifest["stats"][split] for t in entries}
    maybe_die("megatron_blend.before_write")
    (work / BLEND_JSON).write_text(json.dumps(per_split, indent=2) + "\n")
    shutil.copyfile(config["blend_file"], work / "blend_file.json")
    return stats


def rows(name: str, stats: dict[str, Any], status: str) -> Iterator[tuple]:
    for split in SPLITS:
        per = stats.get(split, {})
        docs = sum(s["docs"] for s in per.values())
        tokens = sum(s["tokens"] for s in per.values())
        yield (split, len(per), docs, tokens)
