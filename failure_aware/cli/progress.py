"""Progress of long commands (import, export, verify, ``correlate --rebuild``) on stderr, with rate and ETA.

The library reports progress through a plain callback, ``on_progress(phase, done, total)`` (see
``ledger.Progress``); ``Progress`` here draws it with rich, one line per phase ("reading", "checking",
"writing", ...), each with its count, rate and time left. It draws only when stderr is a terminal: in a
pipe, a log or a test nothing is printed, and stdout (tables, ``--json``) is never touched. A command whose
data goes to a terminal on stdout (``export`` without ``-o``) shows none either, so the two never mix.

The display is redrawn from the callback (the library calls it every chunk, about every thousand rows),
at most five times a second, never from a thread of its own. ``FAILURE_AWARE_PROGRESS=0`` turns it off on
a terminal too.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

ENV_SWITCH = "FAILURE_AWARE_PROGRESS"
# Redrawn from the callback itself, at most this often: rich's own refresh thread competed with the command
# for the GIL (measured on a loaded 2-core machine: an import of 50,000 lines 59 % slower, best of 3).
REDRAW_SECONDS = 0.2

# phase -> (what the line says, what is counted: "bytes" shows sizes, anything else counts items)
PHASES = {
    "read": ("reading and checking", "bytes"),
    "check": ("checking", "records"),
    "write": ("writing", "events"),
    "export": ("exporting", "events"),
    "verify": ("verifying", "events"),
    "clusters": ("checking clusters", "failures"),
    "correlate": ("correlating", "failures"),
}


class AmountColumn(ProgressColumn):
    """How much is done, of how much: sizes for bytes (``12.3/45.6 MB``), counts otherwise
    (``12,000/45,000 events``)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "items")
        done = int(task.completed)
        if unit == "bytes":
            total = "?" if task.total is None else filesize.decimal(int(task.total))
            return Text(f"{filesize.decimal(done)}/{total}", style="progress.download")
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{done:,}/{total} {unit}", style="progress.download")


class RateColumn(ProgressColumn):
    """The rate: ``3.2 MB/s`` for bytes, ``12,345 events/s`` otherwise (rich's over the last 30 s while a
    phase runs, the phase's average once it is over)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "items")
        speed = task.fields.get("rate") or task.speed  # a finished phase: its average rate
        if speed is None:
            return Text("?/s", style="progress.data.speed")
        if unit == "bytes":
            return Text(f"{filesize.decimal(int(speed))}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {unit}/s", style="progress.data.speed")


def wanted(console: Console) -> bool:
    """Whether to draw progress on ``console``: a terminal, and not switched off."""
    return console.is_terminal and os.environ.get(ENV_SWITCH, "1") != "0"


class Progress:
    """A progress display for one command, used as ``on_progress`` and as a context manager.

    With ``console`` None it draws on stderr when that is a terminal, else it stays silent (calls are
    cheap no-ops). A new phase finishes the line of the one before it.
    """

    def __init__(self, console: Console | None = None, *, enabled: bool | None = None) -> None:
        self.console = console or Console(file=sys.stderr, highlight=False)
        self.enabled = wanted(self.console) if enabled is None else enabled
        self._live: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}
        self._current: str | None = None
        self._drawn = 0.0  # when the display was last redrawn (monotonic)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self._live is None:
            self._live = RichProgress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), AmountColumn(), RateColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
                console=self.console, transient=False, auto_refresh=False,
            )
            self._live.start()
        if self._current is not None and self._current != phase:
            self._finish(self._current)
        task = self._tasks.get(phase)
        if task is None:
            label, unit = PHASES.get(phase, (phase, "items"))
            task = self._tasks[phase] = self._live.add_task(label, total=total, unit=unit)
            self._started[phase] = time.monotonic()
        self._current = phase
        self._live.update(task, completed=done, total=total)
        now = time.monotonic()
        if now - self._drawn >= REDRAW_SECONDS:
            self._drawn = now
            self._live.refresh()

    def _finish(self, phase: str) -> None:
        """A phase is over: its bar shows complete at what it reached (its total may have been a guess)."""
        assert self._live is not None
        task = self._tasks[phase]
        done = {t.id: t for t in self._live.tasks}[task].completed
        seconds = time.monotonic() - self._started[phase]
        self._live.update(task, total=done, rate=done / seconds if seconds > 0 else None)

    def close(self) -> None:
        """Stop drawing (the last state of each line stays on the screen)."""
        if self._live is not None:
            if self._current is not None:
                self._finish(self._current)
            self._live.refresh()
            self._live.stop()
            self._live = None
