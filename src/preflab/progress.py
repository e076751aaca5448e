"""Progress for every stage that can take more than a few seconds: sampling, training, evaluation.

On a terminal, a rich bar that fits 80 columns: what, done/total, a short info field, elapsed and ETA. The ETA
is the average time per unit so far times the units left (rich's own estimate looks only at the last 30
seconds, so it stays blank when a unit takes longer). When stderr is not a terminal (``make demo > log``,
CI, a notebook's captured output), the bar becomes a plain line every ``every_s`` seconds and one at the end,
so a long stage is never silent.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text


def clock(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``-:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def eta(elapsed: float, done: float, total: float | None) -> float | None:
    """Seconds left at the average rate so far (None before the first unit, or without a total)."""
    if total is None or done <= 0:
        return None
    return elapsed / done * max(0.0, total - done)


class _TimesColumn(ProgressColumn):
    """``1:23 ETA 4:56`` from the task's own average rate."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        first = task.fields.get("first", 0)
        total = None if task.total is None else task.total - first
        return Text(
            f"{clock(elapsed)} ETA {clock(eta(elapsed, task.completed - first, total))}", style="progress.remaining"
        )


class Work:
    """A progress display for ``total`` units of one stage; use as a context manager and call :meth:`advance`."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        unit: str = "",
        start: int = 0,
        enabled: bool = True,
        every_s: float = 30.0,
        console: Console | None = None,
    ) -> None:
        self.description, self.total, self.unit, self.start = description, total, unit, start
        self.done, self.info, self.every_s = start, "", every_s
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.t0 = self.last_line = time.monotonic()
        self.progress: Progress | None = None

    def __enter__(self) -> Work:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                _TimesColumn(),
                console=self.console,
            )
            self.task = self.progress.add_task(
                self.description, total=self.total, completed=self.start, info="", first=self.start
            )
            self.progress.start()
        return self

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.update(self.done + n, info)

    def update(self, done: int, info: str | None = None) -> None:
        self.done = done
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=done, info=self.info)
        elif time.monotonic() - self.last_line >= self.every_s:
            self.line()

    def line(self) -> None:
        """One plain progress line on the console (what a log file gets)."""
        elapsed = time.monotonic() - self.t0
        done = self.done - self.start
        total = None if self.total is None else self.total - self.start
        unit = f" {self.unit}" if self.unit else ""
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {done / elapsed:.2f}{unit}/s" if elapsed > 0 and done > 0 else ""
        info = f", {self.info}" if self.info else ""
        self.console.print(
            f"{self.description}: {self.done}{of}{unit}{info}{rate}, elapsed {clock(elapsed)}, "
            f"ETA {clock(eta(elapsed, done, total))}",
            highlight=False,
            soft_wrap=True,
        )
        self.last_line = time.monotonic()

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        elif self.enabled and exc[0] is None:
            self.line()
