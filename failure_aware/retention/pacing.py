"""Pacing an archive so the work it shares the machine with keeps going (SPEC 15: "chunks that never block
workers for long").

An archive is bulk work: left to run flat out it takes a whole core and a share of the database's, and on a
small machine the workers lose a good part of their rate meanwhile (docs/benchmarks.md, section 11). A
``Pacer`` keeps the archive busy at most ``max_busy`` of its run: after each unit (a page written to the
file, a chunk removed) it pauses ``elapsed * (1 - max_busy) / max_busy``, so the pauses scale with what
the unit actually cost on this machine, now. ``max_busy=1`` never pauses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEFAULT_MAX_BUSY = 0.25  # measured: 4 workers keep 0.93-0.94 of their rate at 10M (docs/benchmarks.md, 11)
MAX_PAUSE_SECONDS = 5.0  # one unit that was slow (a lock wait) never puts the archive to sleep for long


class Pacer:
    """Measures each unit of work and pauses after it (see the module docstring)."""

    def __init__(self, max_busy: float = DEFAULT_MAX_BUSY, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_busy, self.clock, self.sleep = max_busy, clock, sleep
        self.paused = 0.0  # seconds spent pausing so far

    @contextmanager
    def unit(self) -> Iterator[None]:
        began = self.clock()
        yield
        if self.max_busy >= 1:
            return
        pause = min(MAX_PAUSE_SECONDS, (self.clock() - began) * (1 - self.max_busy) / self.max_busy)
        if pause > 0:
            self.sleep(pause)
            self.paused += pause
