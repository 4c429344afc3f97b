"""The foreground worker: claim due events, call the handler, record each outcome, until told to stop.

Nothing here runs on its own: a ``Worker`` works only inside ``run()``, which the caller (``retry --due``,
``worker``, ``Ledger.retry_due``) invokes and which returns when the work is done (``once``), the
``limit`` is reached, or ``stop()`` is called.

Batches and stopping. Each loop claims a batch of due events in one short transaction, then runs them one
by one, recording their outcomes in groups (below). Claimed events are IN_FLIGHT, and the state machine
has no way back to PENDING, so a claim that is never run is closed by ``recover`` as an ``abandoned``
attempt: a failure that did not happen. The worker therefore never leaves claims behind on a graceful
stop: after ``stop()`` it claims nothing more, and runs the claims already in hand. To keep that short,
the batch is sized from the measured time per attempt so that a batch is about ``batch_seconds`` of work:
one claim at a time for slow handlers (the "attempt in hand"), up to ``batch_size`` for fast ones. A claim
whose lease has already expired when its turn comes is not started (``skipped``); ``recover`` closes it.

Group commit. The outcomes of a batch are recorded together, in one transaction (``Ledger.finish_many``:
one statement per table for the whole group), instead of one transaction each: for fast handlers that is
most of the cost of an attempt. What stays as it was:

- every outcome is recorded exactly once, fenced by its own claim's token: a claim lost meanwhile is
  reported ``lost`` (``StaleClaim``) on its own, and the other outcomes of its group are recorded;
- each attempt keeps its own time (``at`` is when its handler returned, not when the group was written)
  and gets its own ``on_result`` report, in claim order, once its group is written;
- promptly: a group is written when the batch's handlers are done, and before the next handler starts
  when waiting for it (expected to take as long as the last one) would keep the oldest outcome waiting
  ``flush_seconds`` or more. So slow handlers have each outcome written before the next handler starts,
  and an outcome waits at most ``flush_seconds`` plus one handler that runs longer than its predecessor;
  ``flush_seconds=0`` writes every outcome before the next handler starts;
- ``stop()`` (Ctrl-C) still runs the claims in hand and writes their outcomes. Whatever a handler raises
  is a failed attempt (``core.handler_outcome``); a handler's ``SystemExit`` stops the worker like
  ``stop()`` (the claims in hand are run) and is raised once their outcomes are written, a
  ``KeyboardInterrupt`` (any other ``BaseException``) is raised as soon as the outcomes known are
  written (the claims not yet run wait for their lease to expire and ``recover``). A database error writes
  the outcomes already known before it is raised;
- one bad outcome never costs the others: ``Ledger.finish_many`` judges each on its own, and one it
  cannot store as it is gets recorded as a plain failure saying why (``handler_outcome.record``).

What changes is the window a crash can lose: a process killed with outcomes not yet written loses those
(their claims expire, ``recover`` closes them as ``abandoned`` and they run again), as a crash between a
handler and its ``finish`` always could, for one attempt.

Concurrency N runs N loops in threads of this process, each claiming for itself (worker id
``host:pid/i``). Handlers run in those threads; callbacks are called one at a time. SQLAlchemy engines are
thread-safe, and every transaction takes its own connection (SQLite's writers queue on the database
lock), so threads are safe on both backends; they pay off when handlers wait on I/O. For CPU-bound
handlers, or more throughput on PostgreSQL, start several worker processes instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .core import claims, handler_outcome, validation
from .core.claims import ClaimOutcome
from .core.handler_outcome import exception_text
from .errors import FailureAwareError, ValidationError
from .models import AttemptResult, Claim
from .states import State
from .timeutil import format_time

if TYPE_CHECKING:
    from .ledger import Handler, Ledger

DEFAULT_BATCH_SIZE = 50
DEFAULT_BATCH_SECONDS = 0.5
MAX_CONCURRENCY = 64
MAX_LEASE_SECONDS = 7 * 86400  # as Ledger.claim accepts


@dataclass(frozen=True)
class AttemptReport:
    """What happened to one claim: its recorded result, or why there is none.

    ``outcome`` is the attempt's outcome (``succeeded``, ``failed``), or ``lost`` (the handler ran but the
    claim no longer held the event when its outcome was recorded: ``StaleClaim``, nothing written), or
    ``skipped`` (the lease had expired before the handler was started; ``recover`` closes the claim).
    """

    claim: Claim
    result: AttemptResult | None
    seconds: float = 0.0  # handler and recording (its share of its group's transaction)
    problem: str | None = None  # why there is no result
    skipped: bool = False  # not started (lease expired first)

    @property
    def outcome(self) -> str:
        """``succeeded``, ``failed``, ``lost`` or ``skipped``."""
        if self.result is not None:
            return str(self.result.attempt.outcome)
        return "skipped" if self.skipped else "lost"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: one line of ``worker --json``."""
        result, event = self.result, self.claim.event
        return {
            "kind": "attempt",
            "event_id": event.id,
            "event_type": event.event_type,
            "attempt": self.claim.attempt_number,
            "outcome": self.outcome,
            "state": str(result.state) if result else None,
            "next_retry_at": format_time(result.next_retry_at) if result else None,
            "error_type": result.attempt.error_type if result else None,
            "error": result.attempt.error if result else self.problem,
            "worker": self.claim.worker,
            "seconds": round(self.seconds, 6),
        }


@dataclass
class WorkerSummary:
    """Counts of what a worker run did, by outcome."""

    succeeded: int = 0  # attempts that succeeded
    failed: int = 0  # attempts that failed; the event is FAILED and will be due again
    dead: int = 0  # attempts that failed and left the event DEAD
    lost: int = 0  # handler ran, but the claim had been lost (StaleClaim): not recorded
    skipped: int = 0  # lease expired before the handler started: not run
    elapsed_seconds: float = 0.0
    stopped: bool = False  # ended by stop() (Ctrl-C) rather than by running out of work or the limit
    by_type: dict[str, int] = field(default_factory=dict)  # attempts recorded per event type

    @property
    def attempts(self) -> int:
        """Attempts recorded (succeeded, failed, dead)."""
        return self.succeeded + self.failed + self.dead

    @property
    def attempts_per_second(self) -> float:
        """Recorded attempts per second of the run."""
        return self.attempts / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def add(self, report: AttemptReport) -> None:
        """Count one report."""
        result = report.result
        if result is None:
            if report.skipped:
                self.skipped += 1
            else:
                self.lost += 1
            return
        if result.state is State.SUCCEEDED:
            self.succeeded += 1
        elif result.state is State.DEAD:
            self.dead += 1
        else:
            self.failed += 1
        event_type = report.claim.event.event_type
        self.by_type[event_type] = self.by_type.get(event_type, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the last line of ``worker --json``)."""
        return {
            "kind": "summary", "attempts": self.attempts, "succeeded": self.succeeded, "failed": self.failed,
            "dead": self.dead, "lost": self.lost, "skipped": self.skipped,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "attempts_per_second": round(self.attempts_per_second, 1), "stopped": self.stopped,
            "by_type": dict(sorted(self.by_type.items())),
        }


def next_batch_size(current: int, seconds_per_attempt: float, *, cap: int, target_seconds: float) -> int:
    """The next claim size: about ``target_seconds`` of work at the measured rate, growing at most 2x."""
    wanted = cap if seconds_per_attempt <= 0 else int(target_seconds / seconds_per_attempt)
    return max(1, min(cap, 2 * current, wanted))


class Worker:
    """Runs due events through ``handler`` with ``concurrency`` loops; see the module docstring.

    ``limit`` caps the claims of the whole run. ``lease_seconds`` is each claim's lease: an attempt not
    recorded by then is stuck, and ``recover`` closes it. ``idle_sleep_seconds`` is the polling interval
    when nothing is due (not with ``once``). ``flush_seconds`` bounds how long an outcome waits for others
    to be recorded with it (group commit; 0: none waits). Invalid arguments raise ``ValidationError``.
    """

    def __init__(
        self,
        ledger: Ledger,
        handler: Handler,
        *,
        event_type: str | None = None,
        concurrency: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        idle_sleep_seconds: float = 1.0,
        flush_seconds: float = claims.DEFAULT_FLUSH_SECONDS,
        worker_id: str | None = None,
        limit: int | None = None,
    ) -> None:
        if not callable(handler):
            raise ValidationError("handler must be callable: handler(event)")
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("concurrency", concurrency, allow_none=False)
        if concurrency > MAX_CONCURRENCY:
            raise ValidationError(f"concurrency must be at most {MAX_CONCURRENCY}, got {concurrency}")
        validation.positive_int("batch_size", batch_size, allow_none=False)
        validation.positive_int("limit", limit)
        for name, value in (("batch_seconds", batch_seconds), ("lease_seconds", lease_seconds),
                            ("idle_sleep_seconds", idle_sleep_seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, int | float) or not (
            0 <= flush_seconds < float("inf")
        ):
            raise ValidationError(f"flush_seconds must be a number of seconds, 0 or more, "
                                  f"got {flush_seconds!r}")
        if lease_seconds > MAX_LEASE_SECONDS:
            raise ValidationError(f"lease_seconds must be at most {MAX_LEASE_SECONDS} (7 days), "
                                  f"got {lease_seconds}")
        self.ledger = ledger
        self.handler = handler
        self.event_type = event_type
        self.concurrency = concurrency
        self.batch_size = batch_size
        # A batch must be finished well within its lease, whatever the configured target.
        self.batch_seconds = min(float(batch_seconds), lease_seconds / 4)
        self.flush_seconds = min(float(flush_seconds), self.batch_seconds)
        self.lease_seconds = float(lease_seconds)
        self.idle_sleep_seconds = min(float(idle_sleep_seconds), threading.TIMEOUT_MAX)
        self.worker_id = validation.name("worker_id", worker_id or claims.default_worker_id())
        self.limit = limit
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claimed = 0  # claims taken or reserved, against ``limit``
        self._idle = False
        self._summary = WorkerSummary()
        self._error: BaseException | None = None

    # -- control -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loops to finish the claims in hand and return; safe from any thread or signal handler.

        Stopping is final: a stopped worker's ``run()`` returns at once (make a new ``Worker`` to go on).
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` has been called."""
        return self._stop.is_set()

    def run(
        self,
        once: bool = False,
        on_result: Callable[[AttemptReport], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> WorkerSummary:
        """Work until stopped (or, with ``once``, until nothing is due); returns the counts.

        ``on_result`` is called after each claim is dealt with, ``on_idle`` when the worker runs out of due
        events (once per idle spell). Both are called one at a time, from the loop threads. An error from
        the database (or a handler's ``BaseException``) stops every loop and is raised here.
        """
        self._summary = WorkerSummary()
        self._error = None
        self._claimed, self._idle = 0, False
        started = time.monotonic()
        try:
            if self.concurrency == 1:
                self._loop(self.worker_id, once, on_result, on_idle)
            else:
                self._run_threads(once, on_result, on_idle)
        finally:
            self._summary.elapsed_seconds = time.monotonic() - started
            self._summary.stopped = self.stopping
        if self._error is not None:
            raise self._error
        return self._summary

    def _run_threads(self, once: bool, on_result: Any, on_idle: Any) -> None:
        threads = [
            threading.Thread(
                target=self._guarded_loop, args=(f"{self.worker_id}/{i}", once, on_result, on_idle),
                name=f"failure-aware-worker-{i}", daemon=True,  # a second Ctrl-C must not wait for them
            )
            for i in range(1, self.concurrency + 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # short joins keep the main thread responsive to signals

    def _guarded_loop(self, name: str, once: bool, on_result: Any, on_idle: Any) -> None:
        try:
            self._loop(name, once, on_result, on_idle)
        except BaseException as exc:  # hand it to run(); the other loops finish what they hold and stop
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()

    # -- the loop ------------------------------------------------------------------------------------
    def _loop(self, name: str, once: bool, on_result: Any, on_idle: Any) -> None:
        size = 1  # start small: the first batch measures how long an attempt takes
        while not self._stop.is_set():
            want = self._reserve(size)
            if want == 0:
                return
            taken = self.ledger.claim_due(
                limit=want, event_type=self.event_type, worker=name, lease_seconds=self.lease_seconds
            )
            self._release(want - len(taken))
            if not taken:
                if once:
                    return
                self._notify_idle(on_idle)
                self._stop.wait(self.idle_sleep_seconds)
                continue
            began = time.monotonic()
            self._run_batch(taken, on_result)
            size = next_batch_size(size, (time.monotonic() - began) / len(taken), cap=self.batch_size,
                                   target_seconds=self.batch_seconds)

    def _run_batch(self, taken: list[Claim], on_result: Any) -> None:
        """Run every claim of the batch, even after stop() (they are the attempts in hand), recording the
        outcomes in groups; whatever ends the batch, the outcomes already known are recorded."""
        group = _Group()
        exiting: BaseException | None = None  # a handler's SystemExit: raised once the batch is done
        try:
            for claim in taken:
                if group.due(self.flush_seconds):
                    self._flush(group, on_result)
                ran = self._attempt(claim)
                group.add(ran)
                if ran.stop is not None and not isinstance(ran.stop, SystemExit):
                    raise ran.stop  # exit at once (the outcomes known are written below)
                if ran.stop is not None and exiting is None:
                    exiting = ran.stop
                    self.stop()
        finally:
            self._flush(group, on_result)
        if exiting is not None:
            raise exiting

    def _attempt(self, claim: Claim) -> _Ran:
        """Run the handler on one claim (unless its lease has expired); the outcome is not recorded yet."""
        if self.ledger.clock() >= claim.lease_expires_at:
            expired = format_time(claim.lease_expires_at)
            return _Ran(claim, None,
                        problem=f"not started: its lease expired at {expired}; `recover` closes it")
        ran = handler_outcome.run_handler(self.handler, claim, self.ledger.clock)
        return _Ran(claim, ran.outcome, ran.seconds, stop=ran.stop)

    def _flush(self, group: _Group, on_result: Any) -> None:
        """Record the group's outcomes in one transaction, then report each attempt, in claim order."""
        ran = group.take()
        outcomes = [r.outcome for r in ran if r.outcome is not None]
        began = time.monotonic()
        results = iter(handler_outcome.record(self.ledger.finish_many, outcomes))
        share = (time.monotonic() - began) / len(outcomes) if outcomes else 0.0
        for attempt in ran:
            self._deliver(attempt.report(next(results) if attempt.outcome else None, share), on_result)

    def _reserve(self, size: int) -> int:
        with self._lock:
            want = size if self.limit is None else min(size, self.limit - self._claimed)
            self._claimed += want
            return want

    def _release(self, unused: int) -> None:
        if unused:
            with self._lock:
                self._claimed -= unused

    def _deliver(self, report: AttemptReport, on_result: Any) -> None:
        with self._lock:
            self._idle = False
            self._summary.add(report)
            if on_result is not None:
                on_result(report)

    def _notify_idle(self, on_idle: Any) -> None:
        with self._lock:
            if self._idle:
                return
            self._idle = True
            if on_idle is not None:
                on_idle()


@dataclass(frozen=True)
class _Ran:
    """One claim of a batch after its turn: the outcome to record, or (``outcome`` None) why it never ran."""

    claim: Claim
    outcome: ClaimOutcome | None
    seconds: float = 0.0  # the handler's run
    problem: str | None = None
    stop: BaseException | None = None  # the handler's SystemExit (KeyboardInterrupt, ...), recorded first

    def report(self, recorded: AttemptResult | FailureAwareError | None, share: float) -> AttemptReport:
        """This attempt's report, given what recording its outcome gave (None when it never ran) and its
        share of the recording time."""
        if self.outcome is None or recorded is None:
            return AttemptReport(self.claim, None, skipped=True, problem=self.problem)
        seconds = self.seconds + share
        if isinstance(recorded, AttemptResult):
            return AttemptReport(self.claim, recorded, seconds)
        return AttemptReport(self.claim, None, seconds, problem=str(recorded))  # lost: StaleClaim


class _Group:
    """The attempts of a batch run but not yet recorded, in claim order (one loop's; not shared)."""

    def __init__(self) -> None:
        self._ran: list[_Ran] = []
        self._since = 0.0  # when the oldest of them was added

    def add(self, ran: _Ran) -> None:
        """Hold one more attempt."""
        if not self._ran:
            self._since = time.monotonic()
        self._ran.append(ran)

    def due(self, bound: float) -> bool:
        """Whether to record now, before the next handler: waiting for it (as long as the last one took)
        would keep the oldest outcome waiting ``bound`` seconds or more."""
        if not self._ran:
            return False
        return time.monotonic() - self._since + self._ran[-1].seconds >= bound

    def take(self) -> list[_Ran]:
        """The attempts held, in order; the group is empty afterwards."""
        ran, self._ran = self._ran, []
        return ran


__all__ = ["AttemptReport", "Worker", "WorkerSummary", "exception_text", "next_batch_size"]
