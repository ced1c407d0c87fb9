"""What a build may ask for: the display, and a Ray cluster started lazily, at most once.

One Context lives for one command. Ray starts the first time a build asks for it (curate
always; tokenize only on a cluster, `--ray-address`). When the command ends it disconnects; a
cluster it started itself is stopped, a joined one (`--ray-address ADDRESS`) is left running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.artifact import Outcome
from pipeline.cluster import ray_cluster
from pipeline.progress import Bar, Display


@dataclass
class Context:
    display: Display = field(default_factory=Display)
    ray_address: str | None = None
    workers: int | None = None
    ray_starts: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # by key, as first ensured
    _stack: ExitStack = field(default_factory=ExitStack)
    _ray: Any = None
    _warm_ups: list[threading.Thread] = field(default_factory=list)

    def say(self, message: str) -> None:
        self.display.say(message)

    @contextmanager
    def bar(self, label: str, total: int | None, unit_name: str = "tokens") -> Iterator[Bar]:
        with self.display.bar(label, total, unit_name) as bar:
            yield bar

    @property
    def show_progress(self) -> bool:
        return self.display.live

    def warm_up(self, work: Callable[[], None]) -> None:
        """Start `work` (a stage's warm_up) on a thread, beside the builds that follow."""
        thread = threading.Thread(target=work, daemon=True, name="warm-up")
        self._warm_ups.append(thread)
        thread.start()

    @property
    def warming_up(self) -> bool:
        return any(t.is_alive() for t in self._warm_ups)

    def ray(self) -> Any:
        if self._ray is None:
            with self.display.waiting("starting Ray"):
                self._ray = self._stack.enter_context(ray_cluster(self.ray_address, self.workers))
            self.ray_starts += 1
        return self._ray

    def close(self) -> None:
        """Stop what this command started (Ray), once."""
        self._stack.close()
        self._ray = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
