"""What the cache stores and hands out: keys, artifacts, requests for one, and outcomes.

A key is a hash of everything that determines the output, so equal keys mean equal artifacts
and any change of input gives a new key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def make_key(stage: str, version: int, config: dict, parents: list[str], inputs: Any) -> str:
    """Hash of the stage, its version, normalised config, parent keys and input fingerprints."""
    body = json.dumps(
        {
            "stage": stage,
            "version": version,
            "config": config,
            "parents": parents,
            "inputs": inputs,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    key: str
    stage: str
    path: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What `ensure` gave: the artifact, or (unfinished) the work folder a rerun resumes."""

    stage: str
    key: str
    path: Path
    stats: dict[str, Any]
    reused: bool
    artifact: Artifact | None
    seconds: float = 0.0


@dataclass(frozen=True)
class Request:
    """One artifact to ensure: everything its key hashes, plus its name for people."""

    stage: str
    version: int
    name: str
    config: dict[str, Any]
    parents: tuple[str, ...] = ()
    inputs: Any = None

    @property
    def key(self) -> str:
        return make_key(self.stage, self.version, self.config, list(self.parents), self.inputs)


Build = Callable[[Path], dict[str, Any]]
