"""Wall-clock timing for stats and progress."""

from __future__ import annotations

import time


class Stopwatch:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def lap(self) -> float:
        """Seconds since the previous lap (or the start)."""
        now = time.perf_counter()
        lap, self.last = now - self.last, now
        return lap
