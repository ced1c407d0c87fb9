"""What every stage shares: the error a user can fix, and the stats a stage returns.

A stage turns input files and a config into files in a work directory. It knows nothing of the
CLI, the cache or Ray start-up; the pipeline decides where its output goes and whether to run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class InputError(Exception):
    """Bad input the user can fix (a file, a line, a field): shown as one line, no traceback."""


@dataclass
class Counts:
    """Documents seen, kept and skipped (by reason): nothing is dropped without a count."""

    docs: int = 0
    chars: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n
