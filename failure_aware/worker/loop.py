"""The foreground worker: claim due events, call the handler, record each outcome, until told to stop.

Nothing here runs on its own: a ``Worker`` works only inside ``run()``, which the caller (``retry --due``,
``worker``, ``Ledger.retry_due``) invokes and which returns when the work is done (``once``), the
``limit`` is reached, or ``stop()`` is called.

One loop, ``concurrency`` handler slots. The loop (the caller's thread) makes every database call; the
handlers run in ``concurrency`` slot threads (``worker.slots``), which only call the handler. Each
turn of the loop is one transaction (``Ledger.cycle``) that records the outcomes that came back, renews
the leases of the handlers still running, and claims one due event per free slot, and no more:

- a claim is an event some handler is about to run. Claimed events are IN_FLIGHT and the state machine
  has no way back to PENDING, so a claim never run is closed by ``recover`` as an ``abandoned`` attempt, a
  failure that did not happen. Claiming only for free slots means a killed worker costs at most
  ``concurrency`` such attempts, and only for handlers that were really running;
- a handler still running has its lease renewed (to now + ``lease_seconds``) by the loop once a third of
  it has passed, so a slow handler is never taken for a dead one (``lease_seconds`` is how long a worker
  that stopped renewing, because it was killed or lost the database, keeps its claims);
- outcomes are recorded as soon as they come back, together when several do (group commit), each fenced
  by its own claim: a claim lost meanwhile is reported ``lost`` (``StaleClaim``) on its own. Each attempt
  keeps its own time (when its handler returned) and gets its own ``on_result`` report once written.
  With outcomes in hand and handlers still running, the loop first waits for those for up to as long as
  its last step took (at most ``MAX_LINGER_SECONDS``): a step costs about the same whatever it records, so
  fast handlers need half the transactions (commits), and no outcome waits longer than one step.

Database faults. A step that fails because the database is unavailable (``DatabaseUnavailable``: the
server restarted, the connection was terminated) is repeated with backoff (``failure_aware.storage.dbwait``),
holding the outcomes in hand, while the handlers already running go on; the worker gives up, raising
``DatabaseUnavailable`` with one clear line, only after ``max_db_wait_seconds`` of unavailability in a
row. A repeat recognises what a commit that broke mid-way did: outcomes it recorded are reported as
recorded, claims it took are run (found by their token prefix), never left to expire.

Whatever a handler raises is a failed attempt (``core.handler_outcome``): a handler's ``SystemExit`` or
``KeyboardInterrupt`` (any ``BaseException``) is recorded like any failure, then stops the worker like
``stop()`` and is raised once the handlers still running are done and written. One bad outcome never costs
the others: ``Ledger.cycle`` judges each on its own, and one it cannot store as it is gets recorded again
as a plain failure saying why (``handler_outcome.unrecordable``).

Stopping: after ``stop()`` (Ctrl-C) nothing more is claimed; the handlers running finish and their
outcomes are written. A handler's ``BaseException`` stops claiming too, and is raised once the others
are done and written (its own claim stays IN_FLIGHT until its lease expires and ``recover`` closes it).
A process killed loses the outcomes not yet written, at most one per slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from failure_aware.domain import validation
from failure_aware.domain.errors import DatabaseUnavailable, FailureAwareError, StorageError, ValidationError
from failure_aware.domain.records import AttemptResult, Claim
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import format_time
from failure_aware.events import claims, handler_outcome
from failure_aware.events.claims import ClaimOutcome, Cycle
from failure_aware.events.handler_outcome import exception_text
from failure_aware.storage.dbwait import DEFAULT_MAX_DB_WAIT_SECONDS, DatabaseWait
from failure_aware.worker.slots import Slots

if TYPE_CHECKING:
    from failure_aware.ledger import Handler, Ledger

MAX_CONCURRENCY = 64
MAX_LEASE_SECONDS = 7 * 86400  # as Ledger.claim accepts
RENEW_FRACTION = 1 / 3  # a running claim's lease is renewed once this part of it has passed
MAX_LINGER_SECONDS = 0.05  # the longest outcomes in hand wait for others to share their step (group commit)


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
    unrecorded: int = 0  # handler ran, but the worker gave up on the database before writing the outcome
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
            "dead": self.dead, "lost": self.lost, "skipped": self.skipped, "unrecorded": self.unrecorded,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "attempts_per_second": round(self.attempts_per_second, 1), "stopped": self.stopped,
            "by_type": dict(sorted(self.by_type.items())),
        }




class Worker:
    """Runs due events through ``handler`` in ``concurrency`` slots; see the module docstring.

    ``limit`` caps the claims of the whole run. ``lease_seconds`` is each claim's lease (renewed while its
    handler runs): how long a claim outlives a worker that stopped renewing it before ``recover`` may
    close it. ``idle_sleep_seconds`` is the polling interval when nothing is due (not with ``once``).
    ``max_db_wait_seconds`` is how long the database may stay unavailable before the worker gives up.
    Invalid arguments raise ``ValidationError``.
    """

    def __init__(
        self,
        ledger: Ledger,
        handler: Handler,
        *,
        event_type: str | None = None,
        concurrency: int = 1,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        idle_sleep_seconds: float = 1.0,
        max_db_wait_seconds: float = DEFAULT_MAX_DB_WAIT_SECONDS,
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
        validation.positive_int("limit", limit)
        for name, value in (("lease_seconds", lease_seconds), ("idle_sleep_seconds", idle_sleep_seconds),
                            ("max_db_wait_seconds", max_db_wait_seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")
        if lease_seconds > MAX_LEASE_SECONDS:
            raise ValidationError(f"lease_seconds must be at most {MAX_LEASE_SECONDS} (7 days), "
                                  f"got {lease_seconds}")
        self.ledger = ledger
        self.handler = handler
        self.event_type = event_type
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.idle_sleep_seconds = min(float(idle_sleep_seconds), 365 * 86400.0)  # a poll that cannot overflow
        self.max_db_wait_seconds = float(max_db_wait_seconds)
        self.worker_id = validation.name("worker_id", worker_id or claims.default_worker_id())
        self.limit = limit
        self._stopped = False
        self._claimed = 0  # claims taken, against ``limit``
        self._summary = WorkerSummary()

    # -- control -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to claim nothing more, let the running handlers finish, write their outcomes and
        return; safe from a signal handler or another thread.

        Stopping is final: a stopped worker's ``run()`` returns at once (make a new ``Worker`` to go on).
        """
        self._stopped = True

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` has been called."""
        return self._stopped

    @property
    def summary(self) -> WorkerSummary:
        """The counts of the current (or last) ``run``, also when it ended with an error."""
        return self._summary

    def run(
        self,
        once: bool = False,
        on_result: Callable[[AttemptReport], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_db_fault: Callable[[str], None] | None = None,
    ) -> WorkerSummary:
        """Work until stopped (or, with ``once``, until nothing is due); returns the counts.

        ``on_result`` is called after each claim is dealt with, ``on_idle`` when the worker runs out of due
        events (once per idle spell), ``on_db_fault`` with a line when the database becomes unavailable
        and when it is back. All are called from the caller's thread. A handler's ``BaseException``, an
        error from the database other than unavailability, or unavailability past
        ``max_db_wait_seconds`` is raised here; ``summary`` still has the counts.
        """
        self._summary = WorkerSummary()
        self._claimed = 0
        started = time.monotonic()
        slots: Slots[Claim, _Ran] = Slots(self.concurrency, self._attempt)
        try:
            wait = DatabaseWait(self.max_db_wait_seconds, on_db_fault)
            _Loop(self, slots, once, on_result, on_idle, wait).run()
        finally:
            slots.close()
            self._summary.elapsed_seconds = time.monotonic() - started
            self._summary.stopped = self.stopping
        return self._summary

    def _attempt(self, claim: Claim) -> _Ran:
        """Run the handler on one claim (unless its lease has expired); the outcome is not recorded yet."""
        if self.ledger.clock() >= claim.lease_expires_at:
            expired = format_time(claim.lease_expires_at)
            return _Ran(claim, None,
                        problem=f"not started: its lease expired at {expired}; `recover` closes it")
        ran = handler_outcome.run_handler(self.handler, claim, self.ledger.clock)
        return _Ran(claim, ran.outcome, ran.seconds, stop=ran.stop)

    def _deliver(self, report: AttemptReport, on_result: Callable[[AttemptReport], None] | None) -> None:
        self._summary.add(report)
        if on_result is not None:
            on_result(report)


@dataclass
class _Running:
    """A claim whose handler is running, and when its lease is next renewed (monotonic seconds)."""

    claim: Claim
    renew_at: float


class _Loop:
    """One ``Worker.run``: the foreground loop over the slots (see the module docstring)."""

    def __init__(self, worker: Worker, slots: Slots[Claim, _Ran], once: bool, on_result: Any, on_idle: Any,
                 wait: DatabaseWait) -> None:
        self.w, self.slots, self.once = worker, slots, once
        self.on_result, self.on_idle, self.wait = on_result, on_idle, wait
        self.running: dict[str, _Running] = {}  # by token
        self.held: list[_Ran] = []  # handlers done, outcomes not yet written
        self.fatal: BaseException | None = None
        self.drained = False  # once: a claim found less due than it asked for
        self.next_poll = 0.0  # when nothing was due: when to look again
        self.idle = False
        self.renew_every = worker.lease_seconds * RENEW_FRACTION
        self.step_seconds = 0.0  # how long the last step took (its transaction)

    def run(self) -> None:
        try:
            while True:
                self._collect(0)
                self._linger()
                now = time.monotonic()
                want = self._wanted(now)
                renew = [r.claim for r in self.running.values() if r.renew_at <= now]
                if self.held or want or renew:
                    self._step(want, renew, now)
                if not self.running:
                    if self.fatal is not None:
                        raise self.fatal
                    if self._finished():
                        return
                    self._pause(self.next_poll - time.monotonic())
                    continue
                wake = min(r.renew_at for r in self.running.values())
                if self.slots.free and not self.drained:
                    wake = min(wake, self.next_poll)  # a free slot: look for due work again then
                self._collect(max(0.001, wake - time.monotonic()))
        except DatabaseUnavailable:
            self.w.summary.unrecorded += sum(1 for r in self.held if r.outcome is not None)
            raise

    def _linger(self) -> None:
        """Group commit: with outcomes in hand and handlers still running, wait for those for up to as long
        as the last step took (at most ``MAX_LINGER_SECONDS``), so that one step records them together.

        A step costs about the same whatever it records, so with fast handlers this about halves the steps
        per attempt; no outcome waits longer than one more step would have taken.
        """
        if not self.held or not self.running:
            return
        deadline = time.monotonic() + min(self.step_seconds, MAX_LINGER_SECONDS)
        while self.running:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._collect(left)

    def _wanted(self, now: float) -> int:
        """How many events to claim now: one per free slot, within the limit, unless stopping."""
        w = self.w
        if self.fatal is not None or w.stopping or self.drained or now < self.next_poll:
            return 0
        want = self.slots.free
        if w.limit is not None:
            want = min(want, w.limit - w._claimed)
        return max(0, want)

    def _finished(self) -> bool:
        w = self.w
        limit_reached = w.limit is not None and w._claimed >= w.limit
        return self.drained or w.stopping or limit_reached

    def _step(self, want: int, renew: list[Claim], now: float) -> None:
        """Write the outcomes held, renew leases, claim ``want``: one transaction, retried through
        outages; then report the outcomes and start the new claims."""
        ran, self.held = self.held, []
        outcomes = [r.outcome for r in ran if r.outcome is not None]
        prefix = claims.new_prefix()
        w = self.w

        def step(after_fault: bool) -> Cycle:
            return w.ledger.cycle(outcomes, claim=want, renew=renew, event_type=w.event_type,
                                  worker=w.worker_id, lease_seconds=w.lease_seconds, prefix=prefix,
                                  after_fault=after_fault)

        began = time.monotonic()
        try:
            cycle = self.wait.call(step)
        except BaseException:
            self.held = ran + self.held  # still in hand: counted as unrecorded if this ends the run
            raise
        self.step_seconds = time.monotonic() - began
        refused = {i: r for i, r in enumerate(cycle.results) if isinstance(r, ValidationError | StorageError)}
        if refused:  # stored as a plain failure saying why, so the claim is still closed and counted
            again = self.wait.call(lambda _after_fault: handler_outcome.record(
                w.ledger.finish_many,
                [handler_outcome.unrecordable(outcomes[i], problem) for i, problem in refused.items()]))
            for i, result in zip(refused, again, strict=True):
                cycle.results[i] = result
        share = (time.monotonic() - began) / len(outcomes) if outcomes else 0.0
        results = iter(cycle.results)
        for attempt in ran:
            w._deliver(attempt.report(next(results) if attempt.outcome else None, share), self.on_result)
        now = time.monotonic()
        for claim in renew:
            if claim.token in cycle.renewed and claim.token in self.running:
                self.running[claim.token].renew_at = now + self.renew_every
        w._claimed += len(cycle.claims)
        for claim in cycle.claims:
            self.running[claim.token] = _Running(claim, now + self.renew_every)
            self.slots.submit(claim)
        if cycle.claims:
            self.idle = False
        if want and len(cycle.claims) < want:
            if self.once:
                self.drained = True
            else:
                self.next_poll = now + w.idle_sleep_seconds
                if not cycle.claims and not self.running and not self.idle:
                    self.idle = True
                    if self.on_idle is not None:
                        self.on_idle()

    def _collect(self, timeout: float) -> None:
        """Take back the handlers that finished (waiting up to ``timeout`` seconds for one)."""
        for done in self.slots.finished(timeout):
            self.running.pop(done.job.token, None)
            if done.error is not None:
                if self.fatal is None:
                    self.fatal = done.error
            elif done.result is not None:
                self.held.append(done.result)  # recorded first, whatever the handler raised
                if done.result.stop is not None and self.fatal is None:
                    self.fatal = done.result.stop  # a handler's SystemExit / KeyboardInterrupt: stop claiming

    def _pause(self, seconds: float) -> None:
        """Nothing running, nothing due: wait to poll again, in short steps so ``stop()`` is seen."""
        end = time.monotonic() + max(0.0, seconds)
        while not self.w.stopping and time.monotonic() < end:
            time.sleep(min(0.05, end - time.monotonic()))


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


__all__ = ["AttemptReport", "Worker", "WorkerSummary", "exception_text"]
