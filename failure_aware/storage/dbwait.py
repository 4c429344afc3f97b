"""Riding out a database outage: retry one step with backoff, for a bounded time (SPEC section 14).

A worker holds outcomes that exist nowhere else; losing the connection must not lose them, nor stop the
worker. ``DatabaseWait.call`` repeats a step that failed with ``DatabaseUnavailable`` (the connection
failed or broke; see ``storage.faults``) after a growing pause (0.1 s doubling to 5 s), and gives up only
when the database has been unavailable for ``max_seconds`` in a row: then it raises
``DatabaseUnavailable`` saying for how long, with the last error as its cause. Any other error is raised
at once. The loop is bounded in time by ``max_seconds`` and so in count (at most ``max_seconds / 5 + 6``
tries). Each repeat is told it is one (``after_fault``), so the step can recognise what a commit that
broke mid-way may have done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from failure_aware.domain.durations import format_duration
from failure_aware.domain.errors import DatabaseUnavailable

T = TypeVar("T")

DEFAULT_MAX_DB_WAIT_SECONDS = 300.0
FIRST_PAUSE_SECONDS = 0.1
MAX_PAUSE_SECONDS = 5.0


class DatabaseWait:
    """Retries steps through database outages of up to ``max_seconds``.

    ``on_fault(message)`` is called once when an outage starts and once when it ends (a line for the
    operator); ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        max_seconds: float = DEFAULT_MAX_DB_WAIT_SECONDS,
        on_fault: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_seconds = max_seconds
        self.on_fault = on_fault
        self._sleep = sleep
        self._clock = clock

    def call(self, step: Callable[[bool], T]) -> T:
        """``step(after_fault)`` until it succeeds, retrying ``DatabaseUnavailable`` (see the module)."""
        began: float | None = None
        pause = FIRST_PAUSE_SECONDS
        tries = 0
        while True:
            try:
                result = step(began is not None)
            except DatabaseUnavailable as exc:
                now = self._clock()
                tries += 1
                if began is None:
                    began = now
                    self._say(f"database unavailable ({exc}); retrying for up to "
                              f"{format_duration(self.max_seconds)}")
                waited = now - began
                if waited >= self.max_seconds:
                    raise DatabaseUnavailable(
                        f"gave up: the database was unavailable for {format_duration(waited)} "
                        f"({tries} tries; --max-db-wait {format_duration(self.max_seconds)}): {exc}"
                    ) from exc
                self._sleep(min(pause, self.max_seconds - waited))
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                continue
            if began is not None:
                self._say(f"database back after {format_duration(self._clock() - began)}")
            return result

    def _say(self, message: str) -> None:
        if self.on_fault is not None:
            self.on_fault(message)


__all__ = ["DEFAULT_MAX_DB_WAIT_SECONDS", "DatabaseWait"]
