"""Handler slots: the threads a worker runs handlers in, so its own loop stays free to keep the database
up to date (record outcomes, renew leases, claim for a slot that came free) while handlers run.

The threads do nothing but call the function they were given on the claims they are handed, one at a
time each, and hand back what it returned (or the ``BaseException`` it raised). They never claim, retry or
write anything themselves: every decision stays in the worker's foreground loop. They are daemon threads,
so a second Ctrl-C (exit at once) never waits for a handler.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Done(Generic[T, R]):
    """One finished job: its input, and what the function returned or raised."""

    job: T
    result: R | None
    error: BaseException | None = None


class Slots(Generic[T, R]):
    """``size`` threads calling ``run(job)`` for the jobs ``submit`` hands them."""

    def __init__(self, size: int, run: Callable[[T], R], name: str = "failure-aware-slot") -> None:
        self.size = size
        self._run = run
        self._jobs: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done[T, R]] = queue.SimpleQueue()
        self.busy = 0  # jobs submitted and not yet taken back with ``finished``
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
                         for i in range(1, size + 1)]
        for thread in self._threads:
            thread.start()

    @property
    def free(self) -> int:
        """Slots with no job."""
        return self.size - self.busy

    def submit(self, job: T) -> None:
        """Hand a job to a free slot (the caller keeps ``busy`` below ``size``)."""
        self.busy += 1
        self._jobs.put(job)

    def finished(self, timeout: float | None) -> list[Done[T, R]]:
        """The jobs finished so far, waiting up to ``timeout`` seconds for the first (0: do not wait)."""
        done: list[Done[T, R]] = []
        try:
            done.append(self._done.get(timeout=timeout) if timeout else self._done.get_nowait())
            while True:
                done.append(self._done.get_nowait())
        except queue.Empty:
            pass
        self.busy -= len(done)
        return done

    def close(self) -> None:
        """Let the threads end once their current job is done (does not wait for them)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                result: Done[T, R] = Done(job, self._run(job))
            except BaseException as exc:  # handed to the loop, which decides (it raises it after cleanup)
                result = Done(job, None, exc)
            self._done.put(result)


__all__ = ["Done", "Slots"]
