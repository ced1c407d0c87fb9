"""What a person sees while a stage runs: progress bars with rates, then a summary table.

Everything goes to stderr so that `--json` leaves stdout to the one JSON object.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

LABEL_WIDTH = 22  # a bar's label is cut to this, so that a bar fits an 80-column terminal
SHORT_UNITS = {"tokens": "tok", "chars": "chr"}


def compact(n: float) -> str:
    """Three significant digits (1234 -> 1.23k, 123456789 -> 123M): short enough that a bar
    with its counts and rates fits one 80-column line."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            value = n / limit
            return f"{value:.{max(0, 2 - len(str(int(value))) + 1)}f}{suffix}"
    return f"{n:.0f}"


class _CountColumn(ProgressColumn):
    """Documents done (of the total, when known), in compact numbers."""

    def render(self, task: Task) -> Text:
        of = f"/{compact(task.total)}" if task.total else " docs"
        return Text(f"{compact(task.completed)}{of}")


class _RateColumn(ProgressColumn):
    """docs/s and tokens/s (or chars/s for download) from the task's own counters; what the
    stage waits for (e.g. "starting Ray") while it has no documents yet."""

    def render(self, task: Task) -> Text:
        if waiting := task.fields.get("waiting"):
            return Text(waiting, style="yellow")
        elapsed = task.elapsed or 0.0
        if not elapsed or not task.completed:
            return Text("")
        units = task.fields.get("units", 0)
        label = task.fields.get("unit_name", "tokens")
        return Text(
            f"{compact(task.completed / elapsed)} docs/s "
            f"{compact(units / elapsed)} {SHORT_UNITS.get(label, label)}/s",
            style="cyan",
        )


@dataclass
class Bar:
    """One progress bar; `advance(docs, units)` is what stages call."""

    progress: Progress | None
    task: int | None
    units: int = 0

    def advance(self, docs: int, units: int) -> None:
        self.units += units
        if self.progress is not None:
            self.progress.update(self.task, advance=docs, units=self.units)


@dataclass
class Lines(Bar):
    """Progress for logs (CI, Slurm, nohup): a plain line every `every` seconds, no bar."""

    say: Callable[[str], None] = print
    label: str = ""
    total: int | None = None
    unit_name: str = "tokens"
    every: float = 10.0
    docs: int = 0
    printed: int = -1  # docs at the last line
    start: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)

    def advance(self, docs: int, units: int) -> None:
        self.docs += docs
        self.units += units
        if time.monotonic() - self.last >= self.every:
            self.print_line()

    def print_line(self) -> None:
        self.last, self.printed = time.monotonic(), self.docs
        seconds = max(self.last - self.start, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        self.say(
            f"{self.label}: {self.docs:,}{of} docs, {self.docs / seconds:,.0f} docs/s, "
            f"{self.units / seconds:,.0f} {self.unit_name}/s, {seconds:,.0f} s"
        )


@dataclass
class Display:
    """Progress and summaries on stderr; quiet=True keeps only messages (for tests, scripts)."""

    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    rows: list[tuple] = field(default_factory=list)
    _live: list[tuple[Progress, int]] = field(default_factory=list)  # the bars now drawn

    @property
    def live(self) -> bool:
        """Whether bars are drawn: not quiet, and stderr is a terminal."""
        return not self.quiet and self.console.is_terminal

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

    @contextmanager
    def bar(self, label: str, total: int | None, unit_name: str = "tokens") -> Iterator[Bar]:
        if self.quiet:
            yield Bar(None, None)
            return
        if not self.console.is_terminal:
            every = float(os.environ.get("PIPE_PROGRESS_EVERY") or 10)
            lines = Lines(None, None, 0, self.say, label, total, unit_name, every)
            yield lines
            if lines.docs != lines.printed:
                lines.print_line()  # the last line: totals and rates of the whole stage
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=12),
            _CountColumn(),
            TimeElapsedColumn(),
            _RateColumn(),
            console=self.console,
            transient=False,
        )
        short = label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…"
        with progress:
            task = progress.add_task(short, total=total, units=0, unit_name=unit_name)
            self._live.append((progress, task))
            try:
                yield Bar(progress, task)
            finally:
                self._live.remove((progress, task))

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Say what the work waits for (e.g. "starting Ray"): on the open bars instead of
        their rates, else as a line."""
        if not self._live and not self.quiet:
            self.say(f"{what} ...")
        for progress, task in self._live:
            progress.update(task, waiting=what)
        try:
            yield
        finally:
            for progress, task in self._live:
                progress.update(task, waiting=None)

    def add_row(self, *row: object) -> None:
        self.rows.append(row)

    def summary(self, title: str, columns: tuple[str, ...]) -> None:
        if self.quiet or not self.rows:
            self.rows.clear()
            return
        table = Table(title=title)
        for i, name in enumerate(columns):
            table.add_column(name, justify="left" if i < 2 else "right")
        for row in self.rows:
            table.add_row(
                *(
                    f"{c:,}"
                    if isinstance(c, int)
                    else f"{c:.1f}"
                    if isinstance(c, float)
                    else str(c)
                    for c in row
                )
            )
        self.console.print(table)
        self.rows.clear()
