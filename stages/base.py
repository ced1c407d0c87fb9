"""The stage interface, and what every stage shares.

A stage is a module in `stages/` with:

    VERSION: int          bump when its output changes for the same config (it keys the cache)
    RESUMABLE: bool       whether a rerun may keep what an interrupted build left in `work`
    COLUMNS: tuple        the columns of its rows in the summary table
    warm_up(config, ctx)  (optional) started on a thread while the parents are built
    LINKS_PARENTS: bool   (optional) its output names its parents' files, so it is reused only
                          while they are whole and where stats["links"] says
    build(parents, config, work, ctx) -> stats
                          parents: the published Artifacts it reads; config: what the planner
                          decided (pipeline/plan.py); work: the folder to fill; ctx: a Context
    rows(name, stats, status) -> list of rows for the summary table

A stage knows nothing of the CLI or the cache: the pipeline decides whether to build it, where,
and publishes what it leaves in `work`. The pipeline's run walks a dict of these modules.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


class Progress(Protocol):
    def advance(self, docs: int, units: int) -> None: ...


class Context(Protocol):
    """What a build may ask of the pipeline (pipeline/context.py implements it)."""

    workers: int | None
    ray_address: str | None

    def say(self, message: str) -> None: ...

    def bar(
        self, label: str, total: int | None, unit_name: str = "tokens"
    ) -> AbstractContextManager[Progress]: ...

    def ray(self) -> Any:
        """The `ray` module, connected; the cluster starts on first use and stops at the end."""
        ...

    @property
    def show_progress(self) -> bool: ...

    @property
    def warming_up(self) -> bool:
        """Whether a stage's warm_up (imports, loads) is running on a thread of this process:
        a build's own Python work then shares the interpreter lock with it."""
        ...


@dataclass
class Counts:
    """Documents seen, kept and skipped (by reason): nothing is dropped without a count."""

    docs: int = 0
    chars: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n
