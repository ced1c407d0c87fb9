"""What a person sees while a stage runs: progress bars with rates, then a summary table.

Everything goes to stderr so that `--json` leaves stdout to the one JSON object.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


class _RateColumn(ProgressColumn):
    """docs/s and tokens/s (or chars/s for download) from the task's own counters."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not elapsed:
            return Text("")
        units = task.fields.get("units", 0)
        label = task.fields.get("unit_name", "tokens")
        return Text(
            f"{task.completed / elapsed:,.0f} docs/s  {units / elapsed:,.0f} {label}/s",
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
class Reporter:
    """Progress and summaries on stderr; quiet=True keeps only messages (for tests, scripts)."""

    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    rows: list[tuple] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Whether bars are drawn: not quiet, and stderr is a terminal."""
        return not self.quiet and self.console.is_terminal

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

    @contextmanager
    def bar(self, label: str, total: int | None, unit_name: str = "tokens") -> Iterator[Bar]:
        if not self.live:
            yield Bar(None, None)
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn(
                "{task.completed:,}/{task.total:,} docs" if total else "{task.completed:,} docs"
            ),
            TimeElapsedColumn(),
            _RateColumn(),
            console=self.console,
            transient=False,
        )
        with progress:
            task = progress.add_task(label, total=total, units=0, unit_name=unit_name)
            yield Bar(progress, task)

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
