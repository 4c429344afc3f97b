"""``Ledger``: the Python API of failure-aware (SPEC section 9). The CLI and any server only wrap it.

Every method validates its input before it writes, runs in one transaction, and raises only errors of the
``FailureAwareError`` tree. Nothing runs in the background: a handler runs only inside ``run``,
``retry_due`` or a worker loop the caller started.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from failure_aware.config import Config, load_config
from failure_aware.diagnostics.health_report import HealthReport
from failure_aware.diagnostics.verify import VerifyReport
from failure_aware.domain import tokens as api_tokens
from failure_aware.domain import validation
from failure_aware.domain.cluster_records import (
    Cluster,
    ClusterDetail,
    CorrelateReport,
    Incident,
    IncidentDetail,
    Timeline,
)
from failure_aware.domain.errors import (
    DatabaseUnavailable,
    FailureAwareError,
    NotFound,
    StorageError,
    ValidationError,
)
from failure_aware.domain.progress import Progress
from failure_aware.domain.records import Annotation, AttemptResult, Claim, Event, EventDetail, ImportReport
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import EPOCH, Clock, format_time, from_us, to_us, utc_now
from failure_aware.domain.tokens import ApiToken, NewToken, Scope
from failure_aware.events import claims, counters, handler_outcome, operator, queries, recording
from failure_aware.events.claims import ClaimOutcome
from failure_aware.events.dead_letters import DeadLetterType, dead_letters
from failure_aware.events.recording import Reported
from failure_aware.retention.report import ArchiveReport
from failure_aware.storage import batch
from failure_aware.storage.dbwait import DEFAULT_MAX_DB_WAIT_SECONDS
from failure_aware.storage.store import SchemaStatus, Store, inspect_schema

Handler = Callable[[Event], object]
# ``on_progress(phase, done, total)`` of the long calls (import, export, verify, correlate --rebuild): a
# plain callback, called every chunk (never per row); ``total`` is None when it is not known cheaply.
# Phases and their units: "read" (bytes of a JSON Lines input), "check" (records), "write" (events),
# "export" (events), "verify" (events), "clusters" (failures re-read by verify), "correlate" (failures).


def operator_name() -> str:
    """The OS user, the default author of operator actions and notes."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers): still record something honest
        return "unknown-operator"


class Ledger:
    """A failure-aware database: record events and attempts, run and retry work, inspect what happened.

    ``url`` follows SPEC section 2 (argument, then ``FAILURE_AWARE_DB``, then ``sqlite:///failure-aware.db``).
    ``readonly`` opens the database so it refuses writes (for inspection). ``upgrade`` applies pending
    schema migrations. ``config`` holds retry policies and health rules (default: ``failure-aware.toml`` or
    ``[tool.failure-aware]`` in ``pyproject.toml`` of the working directory). ``clock`` is injectable.
    ``on_lock_wait`` (SQLite): called when a write has to wait for the write lock another process holds
    (after a quarter of a second; the write then waits up to the usual 30 s), e.g. to say so.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        readonly: bool = False,
        upgrade: bool = False,
        create: bool = True,
        config: Config | None = None,
        clock: Clock = utc_now,
        max_payload_bytes: int = validation.DEFAULT_MAX_PAYLOAD_BYTES,
        on_lock_wait: Callable[[], None] | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.store = Store(url, readonly=readonly, create=create, upgrade=upgrade, clock=clock,
                           on_lock_wait=on_lock_wait)

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the database connections."""
        self.store.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The database URL in use (password hidden)."""
        return self.store.where

    def _now_us(self, at: datetime | None, field: str = "at") -> int:
        """``at`` (default: now) in microseconds, within [1970, now + max_clock_skew] (SPEC 3)."""
        if at is None:
            return to_us(self.clock())
        return self._time_us(at, field)

    def _time_us(self, moment: datetime, field: str) -> int:
        return validation.time_us(moment, field, latest=validation.latest_us(
            self.store.now_us(), self.config.max_clock_skew_seconds))

    def _since_us(self, moment: datetime | None, field: str) -> int | None:
        return None if moment is None else self._time_us(moment, field)

    def _reported(
        self, ok: bool, *, error_type: str | None, error: str | None, at: datetime | None, permanent: bool,
        retry_after: float | datetime | None, detail: Mapping[str, Any] | None, traceback: str | None = None,
        duration_seconds: float | None = None,
    ) -> Reported:
        """An outcome as given, checked: what a caller names is validated, what the failure produced is
        recorded as it is (NUL and lone surrogates as U+FFFD, over-long text cut): SPEC 3 and 4."""
        if not isinstance(ok, bool):
            raise ValidationError(f"ok must be True or False, got {ok!r}")
        if not isinstance(permanent, bool):
            raise ValidationError(f"permanent must be True or False, got {permanent!r}")
        if ok and (error_type or error or permanent or retry_after is not None):
            raise ValidationError("a succeeded attempt takes no error_type, error, permanent or retry_after")
        at_us = self._now_us(at)
        return Reported(
            ok=ok, at_us=at_us, error_type=validation.failure_name(error_type),
            error=validation.failure_text(error), permanent=permanent,
            retry_after_seconds=_retry_after_seconds(retry_after, at_us),
            detail_json=validation.detail(detail), traceback=validation.traceback_text(traceback),
            duration_us=_duration_us(duration_seconds),
        )

    # -- events --------------------------------------------------------------------------------------
    def detect(
        self,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        at: datetime | None = None,
        actor: str = "system",
    ) -> Event:
        """Record an event as PENDING; an existing ``(event_type, key)`` is returned as it is, unwritten."""
        return self.detect_created(event_type, payload, key=key, at=at, actor=actor)[0]

    def detect_created(
        self,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        at: datetime | None = None,
        actor: str = "system",
    ) -> tuple[Event, bool]:
        """``detect``, also saying whether the event is new (``POST /api/v1/events``: 201 or 200)."""
        validation.event_type(event_type)
        if key is not None:
            validation.key(key)
        _, payload_json = validation.payload(dict(payload) if isinstance(payload, Mapping) else payload,
                                             self.max_payload_bytes)
        validation.name("actor", actor)
        detected_us = self._now_us(at)
        with self.store.write() as conn:
            return recording.detect(
                conn, event_type=event_type, key=key, payload_json=payload_json,
                detected_at_us=detected_us, now_us=self.store.now_us(), actor=actor,
            )

    def report(
        self,
        event_id: int,
        ok: bool,
        *,
        error_type: str | None = None,
        error: str | None = None,
        at: datetime | None = None,
        force: bool = False,
        actor: str = "system",
        permanent: bool = False,
        retry_after: float | datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AttemptResult:
        """Record an attempt the caller ran itself (claim and finish in one step) and its outcome.

        A failure may be ``permanent`` (the event goes to DEAD at once) and may carry ``retry_after``
        (seconds, or an aware datetime, as an HTTP ``Retry-After``): the next try is then no earlier than
        ``at + retry_after``, capped by the policy's ``max_retry_after`` (SPEC 4). ``detail`` is a JSON
        object (at most 16 KiB) kept with the attempt. The error type and message are recorded whatever
        they hold (SPEC 3: NUL and lone surrogates become U+FFFD; a message is cut at 64 Ki characters).
        """
        validation.event_id(event_id)
        if not isinstance(force, bool):
            raise ValidationError(f"force must be True or False, got {force!r}")
        reported = self._reported(ok, error_type=error_type, error=error, at=at, permanent=permanent,
                                  retry_after=retry_after, detail=detail)
        validation.name("actor", actor)
        with self.store.write() as conn:
            return recording.report(conn, event_id, reported, force=force, policies=self.config.policies,
                                    actor=actor, now_us=self.store.now_us())

    # -- running work --------------------------------------------------------------------------------
    def claim(
        self,
        event_id: int,
        *,
        worker: str | None = None,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        force: bool = False,
    ) -> Claim:
        """Claim one event for a runner; finish it with ``finish(claim, ...)`` before the lease expires."""
        validation.event_id(event_id)
        worker = validation.name("worker", worker or claims.default_worker_id())
        lease_us = _lease_us(lease_seconds)
        with self.store.write() as conn:
            return claims.claim_one(
                conn, event_id, worker=worker, lease_us=lease_us, now_us=self.store.now_us(), force=force
            )

    def claim_due(
        self,
        *,
        limit: int = 10,
        event_type: str | None = None,
        worker: str | None = None,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
    ) -> list[Claim]:
        """Claim up to ``limit`` events due now (PENDING, or FAILED past ``next_retry_at``)."""
        validation.positive_int("limit", limit, allow_none=False)
        if event_type is not None:
            validation.event_type(event_type)
        worker = validation.name("worker", worker or claims.default_worker_id())
        with self.store.write() as conn:
            return claims.claim_due(
                conn, worker=worker, lease_us=_lease_us(lease_seconds), now_us=self.store.now_us(),
                limit=limit, event_type=event_type,
            )

    def finish(
        self,
        claim: Claim,
        ok: bool,
        *,
        error_type: str | None = None,
        error: str | None = None,
        at: datetime | None = None,
        permanent: bool = False,
        retry_after: float | datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AttemptResult:
        """Record the outcome of a claimed attempt; ``StaleClaim`` if the claim no longer holds the event.

        ``permanent``, ``retry_after`` and ``detail`` as for ``report``.
        """
        [result] = self.finish_many([ClaimOutcome(claim, ok, error_type=error_type, error=error, at=at,
                                                  permanent=permanent, retry_after=retry_after,
                                                  detail=detail)])
        if isinstance(result, FailureAwareError):
            raise result
        return result

    def finish_many(self, outcomes: Sequence[ClaimOutcome]) -> list[AttemptResult | claims.Unrecorded]:
        """Record the outcomes of several claimed attempts in one transaction (a worker's group commit).

        Returns, in order, each outcome's result, or the error that kept it from being recorded: each
        outcome is judged on its own merits (SPEC 3). A claim that no longer holds its event gets its
        ``StaleClaim`` (``NotFound``), an invalid outcome its ``ValidationError``, and the others are
        recorded. Should the group's write still fail (a database refusing one row's data), each outcome
        is written in a transaction of its own, so one bad outcome never costs the others; one that fails
        alone gets its ``StorageError``. A database that fails every write raises.
        """
        slots, reported = self._checked_outcomes(outcomes)
        written = iter(self._finish_reported(reported) if reported else [])
        return [next(written) if slot is None else slot for slot in slots]

    def _checked_outcomes(
        self, outcomes: Sequence[ClaimOutcome]
    ) -> tuple[list[claims.Unrecorded | None], list[tuple[Claim, Reported]]]:
        """Each outcome checked on its own: ``(slots, reported)``, a slot holding the ``ValidationError``
        of an invalid outcome or None for one in ``reported`` (in order)."""
        if isinstance(outcomes, str | bytes) or not isinstance(outcomes, Sequence):
            raise ValidationError("finish_many takes a sequence of ClaimOutcome items")
        slots: list[claims.Unrecorded | None] = []
        reported: list[tuple[Claim, Reported]] = []
        for outcome in outcomes:
            if not isinstance(outcome, ClaimOutcome):
                raise ValidationError(f"finish_many takes ClaimOutcome items, got {type(outcome).__name__}")
            try:
                if not isinstance(outcome.claim, Claim):
                    raise ValidationError("finish needs the Claim returned by claim() or claim_due()")
                reported.append((outcome.claim, self._reported(
                    outcome.ok, error_type=outcome.error_type, error=outcome.error, at=outcome.at,
                    permanent=outcome.permanent, retry_after=outcome.retry_after, detail=outcome.detail,
                    traceback=outcome.traceback, duration_seconds=outcome.duration_seconds,
                )))
                slots.append(None)
            except ValidationError as refused:
                slots.append(refused)
        return slots, reported

    def _finish_reported(
        self, reported: list[tuple[Claim, Reported]]
    ) -> list[AttemptResult | claims.Unrecorded]:
        try:
            with self.store.write() as conn:
                return claims.finish_claims(conn, reported, policies=self.config.policies,
                                            now_us=self.store.now_us())
        except StorageError as group_error:
            if len(reported) == 1:
                raise
            alone: list[AttemptResult | claims.Unrecorded] = []
            for one in reported:  # one transaction each: the outcome the database refuses fails alone
                try:
                    with self.store.write() as conn:
                        alone += claims.finish_claims(conn, [one], policies=self.config.policies,
                                                      now_us=self.store.now_us())
                except StorageError as refused:
                    alone.append(refused)
            if all(isinstance(r, StorageError) for r in alone):
                raise group_error from None  # the database itself, not one outcome
            return alone

    def cycle(
        self,
        outcomes: Sequence[ClaimOutcome] = (),
        *,
        claim: int = 0,
        renew: Sequence[Claim] = (),
        event_type: str | None = None,
        worker: str | None = None,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        prefix: str | None = None,
        after_fault: bool = False,
    ) -> claims.Cycle:
        """A worker's step, in one transaction: record ``outcomes`` (as ``finish_many``), extend the leases
        of the claims in ``renew`` still running, and claim up to ``claim`` due events.

        One transaction instead of three, because a worker claims only as many events as it has free
        handler slots, so without it every attempt would pay for two or three commits. ``prefix`` starts
        the tokens of the new claims. ``after_fault`` says this repeats a call whose connection broke
        (``DatabaseUnavailable``), perhaps while committing: outcomes it recorded then are recognised
        (not reported lost), and the claims it took then (found by ``prefix``) are returned, not taken
        twice. A claim no longer held is simply not renewed.

        Outcomes are judged one by one, as ``finish_many`` judges them: an invalid one gets its
        ``ValidationError`` in ``results``. Should the step's transaction fail on one outcome's data (a
        ``StorageError`` other than ``DatabaseUnavailable``), the outcomes are written one transaction
        each, then the step is taken again without them.
        """
        slots, reported = self._checked_outcomes(outcomes)
        validation.positive_int("claim", claim or None)
        if event_type is not None:
            validation.event_type(event_type)
        worker = validation.name("worker", worker or claims.default_worker_id())
        lease_us = _lease_us(lease_seconds)
        prefix = prefix or claims.new_prefix()

        def step(reported: list[tuple[Claim, Reported]]) -> claims.Cycle:
            # The step's writes are sent together, with the claim's SELECT and before the commit (round
            # trips were most of a step's time: storage.batch), with one counter upsert for all.
            with self.store.write() as conn, batch.batched(conn), counters.deferred(conn):
                now_us = self.store.now_us()
                results = claims.finish_claims(conn, reported, policies=self.config.policies, now_us=now_us,
                                               after_fault=after_fault) if reported else []
                renewed = claims.renew(conn, renew, lease_us=lease_us, now_us=now_us)  # running claims only
                taken = claims.adopt(conn, prefix) if after_fault and claim else []  # this step's prefix
                if claim > len(taken):
                    taken += claims.claim_due(conn, worker=worker, lease_us=lease_us, now_us=now_us,
                                              limit=claim - len(taken), event_type=event_type, prefix=prefix)
                return claims.Cycle(results, taken, renewed)

        try:
            done = step(reported)
        except DatabaseUnavailable:
            raise
        except StorageError:
            if not reported:
                raise
            alone = self._finish_reported(reported)  # each outcome on its own merits; raises if none lands
            done = step([])
            done = claims.Cycle(alone, done.claims, done.renewed)
        results = iter(done.results)
        return claims.Cycle([next(results) if slot is None else slot for slot in slots], done.claims,
                            done.renewed)

    def run(
        self,
        event_id: int,
        handler: Handler,
        *,
        worker: str | None = None,
        force: bool = False,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
    ) -> AttemptResult:
        """Claim the event, call ``handler(event)``, record the outcome.

        A handler that returns succeeded (``Succeeded(detail=...)`` adds a detail); one that raises failed,
        recorded with the exception's type name, message, traceback and the handler's duration
        (``HandlerFailure`` says more: permanent, retry_after, detail; see ``failure_aware.domain.outcomes``).
        The exception is not re-raised, the failure is data; only a ``BaseException`` that is not an
        ``Exception`` (``SystemExit``, ``KeyboardInterrupt``) is raised again once its attempt is recorded,
        so it still stops the program.
        """
        if not callable(handler):
            raise ValidationError("handler must be callable: handler(event)")
        claim = self.claim(event_id, worker=worker, lease_seconds=lease_seconds, force=force)
        return self._execute(claim, handler)

    def _execute(self, claim: Claim, handler: Handler) -> AttemptResult:
        ran = handler_outcome.run_handler(handler, claim, self.clock)
        [result] = handler_outcome.record(self.finish_many, [ran.outcome])
        ran.reraise()
        if isinstance(result, FailureAwareError):
            raise result
        assert isinstance(result, AttemptResult)
        return result

    def retry_due(
        self,
        handler: Handler,
        *,
        event_type: str | None = None,
        limit: int | None = None,
        worker: str | None = None,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        max_db_wait_seconds: float = DEFAULT_MAX_DB_WAIT_SECONDS,
        should_stop: Callable[[], bool] | None = None,
        on_result: Callable[[AttemptResult], None] | None = None,
    ) -> list[AttemptResult]:
        """Run every event due now (PENDING, or FAILED past ``next_retry_at``), at most ``limit``.

        One pass of the foreground worker (``failure_aware.worker.Worker`` with ``once``): claims one event
        at a time (the one its handler is about to run), records each outcome in the same transaction as
        the next claim, and rides out a database outage of up to ``max_db_wait_seconds``. ``should_stop``
        is checked after each attempt is reported (a Ctrl-C): then nothing more is claimed. Returns the
        recorded results in order; a claim lost meanwhile (``StaleClaim``: its lease expired and it was
        recovered) has no result.
        """
        from failure_aware.worker import Worker

        runner = Worker(self, handler, event_type=event_type, lease_seconds=lease_seconds, worker_id=worker,
                        limit=limit, max_db_wait_seconds=max_db_wait_seconds)
        results: list[AttemptResult] = []

        def collect(report: Any) -> None:
            if report.result is not None:
                results.append(report.result)
                if on_result is not None:
                    on_result(report.result)
            if should_stop is not None and should_stop():
                runner.stop()

        if should_stop is None or not should_stop():
            runner.run(once=True, on_result=collect)
        return results

    def due(self, *, event_type: str | None = None, limit: int = 100) -> list[Event]:
        """Events due now, oldest due first, without claiming them (``retry --due --dry-run``)."""
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit, allow_none=False)
        with self.store.read() as conn:
            return queries.due_events(conn, now_us=self.store.now_us(), event_type=event_type, limit=limit)

    def recover(self, *, dry_run: bool = False, actor: str = "system") -> list[AttemptResult] | list[Event]:
        """Close claims whose lease expired with an ``abandoned`` attempt (FAILED or DEAD by the policy).

        With ``dry_run`` nothing is written and the events that would be recovered are returned.
        """
        now_us = self.store.now_us()
        if dry_run:
            with self.store.read() as conn:
                return [recording.load_event(conn, r.event_id)
                        for r in claims.expired_claims(conn, now_us, lock=False)]
        with self.store.write() as conn:
            return claims.recover_expired(conn, policies=self.config.policies, actor=actor, now_us=now_us)

    # -- reading -------------------------------------------------------------------------------------
    def state_counts(self, *, event_type: str | None = None) -> dict[State, int]:
        """How many events are in each state (every state listed, zeros included), read from the counters."""
        if event_type is not None:
            validation.event_type(event_type)
        with self.store.read() as conn:
            stored = counters.stored(conn)
        totals = dict.fromkeys(State, 0)
        for (kind, state), n in stored.items():
            if event_type is None or kind == event_type:
                totals[State(state)] += n
        return totals

    def events(
        self,
        *,
        state: State | str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before_id: int | None = None,
        until: datetime | None = None,
        fingerprint: str | None = None,
        cluster_id: str | None = None,
    ) -> list[Event]:
        """Events newest first, filtered by state, type and detection time (``since`` <= detected <=
        ``until``), by the fingerprint of one of their failures, or by membership of a cluster (a failure
        in its type and span); page with ``before_id``. An unknown cluster matches no event."""
        from failure_aware.correlation import cluster_queries

        state_value = _state(state) if state is not None else None
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit, allow_none=False)
        since_us = self._since_us(since, "since")
        until_us = self._since_us(until, "until")
        validation.positive_int("before_id", before_id)
        validation.optional_name("fingerprint", fingerprint)
        if cluster_id is not None:
            self._check_cluster_id(cluster_id)
        with self.store.read() as conn:
            within = None
            if cluster_id is not None:
                try:
                    cluster = cluster_queries.get_cluster(conn, cluster_id, self.store.now_us())
                except NotFound:
                    return []  # a filter that matches nothing gives nothing, never everything
                within = (cluster.event_type, to_us(cluster.window_start), to_us(cluster.window_end))
            return queries.list_events(
                conn, state=state_value, event_type=event_type, since_us=since_us, limit=limit,
                before_id=before_id, until_us=until_us, fingerprint=fingerprint, failed_within=within,
            )

    def get(self, event_id: int) -> Event:
        """One event with its current state (``NotFound`` if unknown)."""
        validation.event_id(event_id)
        with self.store.read() as conn:
            return recording.load_event(conn, event_id)

    def show(self, event_id: int) -> EventDetail:
        """An event with its attempts, transitions and annotations (``NotFound`` if unknown)."""
        validation.event_id(event_id)
        from failure_aware.correlation import cluster_queries, incident_queries

        with self.store.read() as conn:
            detail = queries.event_detail(conn, event_id)
            clusters = cluster_queries.clusters_of_event(conn, event_id, now_us=self.store.now_us())
            incidents = incident_queries.incidents_of_clusters(conn, (c.id for c in clusters))
        return dataclasses.replace(detail, cluster_ids=tuple(c.id for c in clusters),
                                   incident_ids=tuple(incidents))

    def iter_events(self) -> Iterator[Event]:
        """Every event in id order, streamed in pages."""
        with self.store.read() as conn:
            yield from queries.iter_events(conn)

    # -- interchange (import / export) -------------------------------------------------------------------
    def import_events(
        self, records: Iterable[Mapping[str, Any]], *, skip_invalid: bool = False, actor: str = "import",
        on_progress: Progress | None = None,
    ) -> ImportReport:
        """Import events with their history from interchange records (SPEC section 8, docs/interchange.md).

        Every record is checked before anything is written; if any is invalid, ``ValidationError`` lists
        them by number (the first 20) and nothing is written, unless ``skip_invalid`` imports the valid
        ones and reports the others in ``ImportReport.invalid``. An event whose ``(event_type, key)``
        exists (or appeared earlier in ``records``) is skipped and counted. States follow the retry policy
        of each type, or the record's own ``transitions`` when given; ``actor`` is recorded on the
        transitions the import derives. All of it is one transaction. ``records`` is read once; the
        checked records are spooled to a temporary file while large, so memory stays bounded.
        ``on_progress`` (see ``Progress``) is told of the "check" and "write" phases.
        """
        from failure_aware.interchange import inputs

        numbered = inputs.number_records(records)
        if on_progress is not None:
            total = len(records) if isinstance(records, Sized) else None
            numbered = inputs.counted(numbered, on_progress, total)
        return self._import(numbered, skip_invalid=skip_invalid, actor=actor, label="record",
                            on_progress=on_progress)

    def import_file(
        self, source: str | Path | IO[str] | IO[bytes], *, skip_invalid: bool = False, actor: str = "import",
        on_progress: Progress | None = None,
    ) -> ImportReport:
        """Import a JSON Lines file (a path, or an open text or binary stream such as ``sys.stdin``); a path
        whose name ends in ``.gz`` is read through gzip (an archive file, docs/retention.md, imports as is).

        Like ``import_events``; problems are reported by line number, blank lines are ignored and a line
        that is not JSON is an invalid line. The input is read once (a stream need not be seekable).
        ``on_progress`` is told of the "read" phase (bytes; the total is the size of a regular file, None
        for a pipe) and the "write" phase.
        """
        from failure_aware.interchange import inputs

        def run(stream: IO[str] | IO[bytes]) -> ImportReport:
            lines: Iterable[str | bytes] = stream
            if on_progress is not None and _binary(stream):
                lines = inputs.counted_file(cast("IO[bytes]", stream), on_progress, _bytes_left(stream))
            return self._import(inputs.read_lines(lines), skip_invalid=skip_invalid, actor=actor,
                                label="line", on_progress=on_progress)

        if not isinstance(source, str | Path):
            return run(source)
        try:
            with inputs.open_file(source) as stream:
                return run(stream)
        except inputs.UNREADABLE as exc:
            raise ValidationError(f"cannot read {source}: {inputs.describe(exc)}") from None

    def import_legacy(
        self, path: str | Path, *, skip_invalid: bool = False, on_progress: Progress | None = None
    ) -> ImportReport:
        """Import the events of a seed (v0.1-v0.3) SQLite database, opened read-only.

        Each legacy event keeps its state and note (as an annotation by ``legacy``), under the key
        ``legacy-<id>``, so importing the same file again skips everything. Its clusters are not copied:
        run ``correlate`` afterwards. The mapping is in docs/interchange.md. A file that is not such a
        database raises ``ValidationError`` and nothing is written.
        """
        from failure_aware.interchange import inputs, legacy

        with legacy.open_legacy(path) as source:
            numbered: Iterable[tuple[int, Any]] = source.records()
            if on_progress is not None:
                numbered = inputs.counted(numbered, on_progress, source.count())
            return self._import(numbered, skip_invalid=skip_invalid, actor=legacy.ACTOR,
                                label="legacy event", on_progress=on_progress)

    def _import(self, numbered: Iterable[tuple[int, Any]], *, skip_invalid: bool, actor: str, label: str,
                on_progress: Progress | None = None) -> ImportReport:
        from failure_aware.interchange import importer
        from failure_aware.interchange.forms import ImportContext

        if not isinstance(skip_invalid, bool):
            raise ValidationError(f"skip_invalid must be True or False, got {skip_invalid!r}")
        now_us = self.store.now_us()
        context = ImportContext(now_us=now_us, actor=validation.name("actor", actor),
                                max_payload_bytes=self.max_payload_bytes, policies=self.config.policies,
                                latest_us=validation.latest_us(now_us, self.config.max_clock_skew_seconds))
        with importer.check(numbered, context, label=label) as checked:
            if checked.invalid and not skip_invalid:
                raise checked.refusal()
            with self.store.write() as conn:
                return importer.write(conn, checked, context, on_progress=on_progress)

    def export_events(
        self, *, event_type: str | None = None, on_progress: Progress | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every event (or those of ``event_type``) as an interchange record, in id order, streamed.

        Records carry, besides SPEC section 8's fields, ``state``, ``next_retry_at`` and ``transitions``,
        so ``import_events`` into an empty database reproduces events, attempts, states, transitions and
        annotations; the cluster notes follow as ``{"kind": "cluster_note", ...}`` records. One read
        transaction (a consistent snapshot) stays open while the iterator is used. ``on_progress`` is told
        of the "export" phase (events; the total from the counters, not a count of history).
        """
        from failure_aware.interchange import exporter

        if event_type is not None:
            validation.event_type(event_type)

        def stream() -> Iterator[dict[str, Any]]:
            with self.store.read() as conn:
                events = exporter.export(conn, event_type=event_type)
                if on_progress is not None:
                    events = exporter.counted(events, on_progress, exporter.event_total(conn, event_type))
                yield from events
                yield from exporter.export_cluster_notes(conn, event_type=event_type)

        return stream()

    def export_file(
        self, target: str | Path | IO[str], *, event_type: str | None = None,
        on_progress: Progress | None = None,
    ) -> int:
        """Write ``export_events`` as JSON Lines (UTF-8) to a path or an open text stream; returns a count."""
        from failure_aware.interchange import exporter

        records = self.export_events(event_type=event_type, on_progress=on_progress)
        if not isinstance(target, str | Path):
            return exporter.write_lines(records, target)
        try:
            with open(target, "w", encoding="utf-8") as stream:
                return exporter.write_lines(records, stream)
        except OSError as exc:
            raise ValidationError(f"cannot write {target}: {exc.strerror or exc}") from None

    # -- retention (SPEC 15) ---------------------------------------------------------------------------
    def archive(
        self,
        before: datetime,
        *,
        to: str | Path | None = None,
        event_type: str | None = None,
        dry_run: bool = False,
        actor: str | None = None,
        on_progress: Progress | None = None,
        chunk_events: int = 500,
        max_busy: float = 0.25,
    ) -> ArchiveReport:
        """Archive whole finished events (SUCCEEDED, DEAD) whose last activity is before ``before``, with
        their attempts, transitions and notes, and the cluster notes and clusters wholly before it: write
        them to ``to`` (JSON Lines, gzip when it ends in ``.gz``, a manifest line last), sync the file, then
        remove them in chunks, each recorded in the ``archive`` table in the same transaction
        (docs/retention.md). ``to`` must not exist. ``dry_run`` writes nothing and reports what would
        leave (``to`` is then optional). ``on_progress(phase, done, total)`` is called as pages are written
        (phase ``"write"``) and chunks removed (``"remove"``). PENDING, IN_FLIGHT and FAILED events never
        leave. Clusters are computed from failures at or after the latest horizon from then on.
        ``chunk_events``: events removed per transaction (what workers may wait on is one chunk's rows).
        ``max_busy`` (0 < x <= 1): the share of its run the archive may be busy; after each page read and
        each chunk removed it pauses in proportion to what that cost, so workers on the same machine keep
        their pace (1: never pause).
        """
        from failure_aware.retention import run

        before_us = self._time_us(before, "before")
        now_us = self.store.now_us()
        if before_us > now_us:
            raise ValidationError(f"before must not be in the future (it is {format_time(before)}; now is "
                                  f"{format_time(from_us(now_us))})")
        if event_type is not None:
            validation.event_type(event_type)
        if not isinstance(dry_run, bool):
            raise ValidationError(f"dry_run must be True or False, got {dry_run!r}")
        if type(chunk_events) is not int or not 1 <= chunk_events <= 100_000:
            raise ValidationError(f"chunk_events must be an integer from 1 to 100000, got {chunk_events!r}")
        if isinstance(max_busy, bool) or not isinstance(max_busy, int | float) or not 0 < max_busy <= 1:
            raise ValidationError(f"max_busy must be a number above 0 and at most 1, got {max_busy!r}")
        if to is None and not dry_run:
            raise ValidationError("an archive needs a file to write (to=...); only a dry run goes without")
        if to is not None and not isinstance(to, str | Path):
            raise ValidationError(f"to must be a path, got {to!r}")
        request = run.Request(before_us=before_us, event_type=event_type,
                              target=None if to is None else Path(to), dry_run=dry_run,
                              actor=validation.name("actor", actor or operator_name()), now_us=now_us,
                              chunk_events=chunk_events, max_busy=float(max_busy))
        return run.archive(self.store, request, on_progress)

    # -- operator actions (revive, bury, annotate) ------------------------------------------------------
    def bury(self, event_id: int, *, actor: str | None = None, reason: str = "given up by operator") -> Event:
        """Give up on a FAILED event: it becomes DEAD (recorded with actor and reason)."""
        return self._operator_step(operator.bury, event_id, actor, reason)

    def revive(
        self, event_id: int, *, actor: str | None = None, reason: str = "revived by operator"
    ) -> Event:
        """Bring a DEAD event back to PENDING; attempt numbers continue, the retry budget restarts."""
        return self._operator_step(operator.revive, event_id, actor, reason)

    def _operator_step(
        self, step: Callable[..., None], event_id: int, actor: str | None, reason: str
    ) -> Event:
        validation.event_id(event_id)
        actor = validation.name("actor", operator_name() if actor is None else actor)
        validation.text("reason", reason, required=True)
        with self.store.write() as conn:
            step(conn, event_id, actor=actor, reason=reason, now_us=self.store.now_us())
            return recording.load_event(conn, event_id)

    def revive_dead(
        self,
        *,
        since: datetime,
        event_type: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        actor: str | None = None,
        reason: str = "bulk revive by operator",
        fingerprint: str | None = None,
    ) -> list[int]:
        """Revive every event that died at or after ``since`` (of one type, with a failure of one
        ``fingerprint``); returns the ids revived.

        With ``dry_run`` nothing is written and the ids that would be revived are returned. The whole bulk
        revive is one transaction: all listed events are revived, or none. The events are locked as they
        are found (skipping those another bulk revive holds), so two at once revive disjoint sets.
        """
        if since is None:
            raise ValidationError("since is required: revive the events that died at or after it")
        since_us = self._time_us(since, "since")
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit)
        validation.optional_name("fingerprint", fingerprint)
        actor = validation.name("actor", operator_name() if actor is None else actor)
        validation.text("reason", reason, required=True)
        if dry_run:
            with self.store.read() as conn:
                return operator.dead_since(conn, event_type=event_type, since_us=since_us, limit=limit,
                                           fingerprint=fingerprint)
        with self.store.write() as conn:
            return operator.revive_dead(conn, event_type=event_type, since_us=since_us, limit=limit,
                                        actor=actor, reason=reason, now_us=self.store.now_us(),
                                        fingerprint=fingerprint)

    def annotate(self, event_id: int, text: str, *, author: str | None = None) -> Annotation:
        """Add a note to an event. Notes are history: never changed, only added to."""
        validation.event_id(event_id)
        validation.text("text", text, required=True)
        author = validation.name("author", operator_name() if author is None else author)
        with self.store.write() as conn:
            return operator.annotate_event(conn, event_id, text, author=author, now_us=self.store.now_us())


    def dead_letters(self, *, sample: int = 500, event_type: str | None = None) -> list[DeadLetterType]:
        """DEAD events by type (exact counts, from the counters) and, within each type's newest
        ``sample``, grouped by the fingerprint of their last failure (the dashboard's dead letters).
        Reads only; its cost is bounded by ``sample`` per type, not by the history."""
        validation.positive_int("sample", sample, allow_none=False)
        if event_type is not None:
            validation.event_type(event_type)
        with self.store.read() as conn:
            return dead_letters(conn, sample=sample, event_type=event_type)

    # -- health ----------------------------------------------------------------------------------------
    def health(self, *, event_type: str | None = None) -> HealthReport:
        """How the work is going (SPEC 6): figures overall and per type, a verdict and its reasons.

        Reads only (works on a ``readonly`` ledger), with the thresholds of ``config.health`` at the
        ledger clock's now; ``event_type`` restricts the report to one type. Its cost does not grow with
        the resolved history (see ``diagnostics.health``).
        """
        from failure_aware.diagnostics.health import compute_health

        if event_type is not None:
            validation.event_type(event_type)
        with self.store.read(snapshot=True) as conn:  # one snapshot: the figures agree with each other
            return compute_health(conn, self.config.health, self.store.now_us(), event_type=event_type)

    def metrics_figures(self) -> tuple[HealthReport, dict[tuple[str, str], int]]:
        """The health report and the attempts per (event type, outcome), from one snapshot in one read
        transaction: what a ``/metrics`` scrape shows (counters and bounded index ranges only)."""
        from failure_aware.diagnostics.health import compute_health
        from failure_aware.events import totals

        with self.store.read(snapshot=True) as conn:
            report = compute_health(conn, self.config.health, self.store.now_us())
            return report, totals.stored(conn)


    # -- correlation -----------------------------------------------------------------------------------
    def correlate(
        self,
        *,
        rebuild: bool = False,
        window: str | int | float | None = None,
        min_failures: int | None = None,
        min_events: int | None = None,
        on_progress: Progress | None = None,
    ) -> CorrelateReport:
        """Bring the failure clusters up to date with history (SPEC 7); the only writer of clusters.

        Incremental: reads only the failures recorded since the last run (late ones with old times too)
        and the neighbourhood they can change, and leaves exactly what ``rebuild=True`` leaves. Parameters
        left as None are the remembered ones (or the defaults: ``window`` 600 s, ``min_failures`` 3,
        ``min_events`` 2); ``window`` is seconds or a duration such as ``"10m"``. A rule other than the
        remembered one needs ``rebuild=True``, else ``ValidationError`` and nothing is written.
        ``on_progress`` is told of the "correlate" phase of a rebuild (failures read; the total from the
        attempt counters).
        """
        from failure_aware.correlation import engine
        from failure_aware.correlation.rule import resolve_rule

        if not isinstance(rebuild, bool):
            raise ValidationError(f"rebuild must be True or False, got {rebuild!r}")
        resolve_rule(None, window, min_failures, min_events)  # bad values fail here, before any transaction
        return engine.run(self.store, rebuild=rebuild, window=window, min_failures=min_failures,
                          min_events=min_events, on_progress=on_progress)

    def clusters(
        self, *, event_type: str | None = None, active: bool = False, since: datetime | None = None,
        limit: int | None = None, after: tuple[datetime, str, str] | None = None, examples: bool = True,
    ) -> list[Cluster]:
        """Stored clusters, newest first (reads only): of one type, only ``active`` ones (``window_end >=
        now - W``), or those that ended at or after ``since``. Page with ``after``: the ``(window_start,
        event_type, id)`` of the last cluster of the previous page. ``examples=False`` leaves out the
        example message of each top fingerprint (reading them scans each cluster's failures: the
        dashboard's list shows fingerprints, one cluster's page its examples)."""
        from failure_aware.correlation import cluster_queries

        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit)
        since_us = self._since_us(since, "since")
        after_us = None
        if after is not None:
            start, kind, cid = after
            self._check_cluster_id(cid)
            after_us = (self._time_us(start, "after"), validation.event_type(kind), cid)
        with self.store.read() as conn:
            return cluster_queries.list_clusters(
                conn, now_us=self.store.now_us(), event_type=event_type, active=bool(active),
                since_us=since_us, limit=limit, after=after_us, examples=examples,
            )

    def cluster(self, cluster_id: str, *, attempts_limit: int = 500) -> ClusterDetail:
        """One cluster (``NotFound`` if unknown): the rule that fired, its window, member events and their
        failed attempts inside it (at most ``attempts_limit``), top fingerprints and annotations."""
        from failure_aware.correlation import cluster_queries

        self._check_cluster_id(cluster_id)
        validation.positive_int("attempts_limit", attempts_limit, allow_none=False)
        with self.store.read() as conn:
            return cluster_queries.cluster_detail(
                conn, cluster_id, now_us=self.store.now_us(), attempts_limit=attempts_limit
            )

    def clusters_of_event(self, event_id: int) -> list[Cluster]:
        """The stored clusters that hold one of this event's failures (for ``show``); reads only."""
        from failure_aware.correlation import cluster_queries

        validation.event_id(event_id)
        with self.store.read() as conn:
            recording.load_event(conn, event_id)  # NotFound for an unknown event
            return cluster_queries.clusters_of_event(conn, event_id, now_us=self.store.now_us())

    def timeline(
        self, *, event_type: str | None = None, buckets: int = 60, since: datetime | None = None,
        until: datetime | None = None,
    ) -> Timeline:
        """Failures per time bucket per event type with the clusters' spans (``clusters --timeline``);
        the range defaults to the first and last failure. Reads only."""
        from failure_aware.correlation import cluster_queries

        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("buckets", buckets, allow_none=False)
        since_us = self._since_us(since, "since")
        until_us = self._since_us(until, "until")
        with self.store.read() as conn:
            return cluster_queries.timeline(
                conn, now_us=self.store.now_us(), event_type=event_type, buckets=buckets,
                since_us=since_us, until_us=until_us,
            )

    def annotate_cluster(self, cluster_id: str, text: str, *, author: str | None = None) -> Annotation:
        """Add a note to a cluster. It is kept against the cluster's type and time span (SPEC 5), so it
        survives any rebuild and shows on every cluster overlapping that span."""
        from failure_aware.correlation.annotations import annotate_cluster

        self._check_cluster_id(cluster_id)
        validation.text("text", text, required=True)
        author = validation.name("author", operator_name() if author is None else author)
        with self.store.write() as conn:
            return annotate_cluster(conn, cluster_id, text, author=author, now_us=self.store.now_us())

    def incidents(
        self, *, event_type: str | None = None, active: bool = False, since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Incident]:
        """Stored incidents (SPEC 13: clusters of several types that started together), newest first;
        reads only. ``event_type``: those with a cluster of that type; ``active``: one of its clusters is
        active; ``since``: those that ended at or after it. Run ``correlate`` to bring them up to date."""
        from failure_aware.correlation import incident_queries

        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit)
        since_us = self._since_us(since, "since")
        with self.store.read() as conn:
            return incident_queries.list_incidents(
                conn, now_us=self.store.now_us(), event_type=event_type, active=bool(active),
                since_us=since_us, limit=limit,
            )

    def incident(self, incident_id: str) -> IncidentDetail:
        """One incident with its clusters and the fingerprints they share (``NotFound`` if unknown);
        reads only."""
        from failure_aware.correlation import incident_queries

        if not isinstance(incident_id, str) or not incident_id.strip() or len(incident_id) > 64:
            raise ValidationError(
                f"an incident id is a string like 'i_0123456789abcdef', got {incident_id!r}")
        with self.store.read() as conn:
            return incident_queries.incident_detail(conn, incident_id, now_us=self.store.now_us())

    @staticmethod
    def _check_cluster_id(cluster_id: object) -> None:
        if not isinstance(cluster_id, str) or not cluster_id.strip() or len(cluster_id) > 64:
            raise ValidationError(f"a cluster id is a string like 'c_0123456789abcdef', got {cluster_id!r}")

    # -- verify ----------------------------------------------------------------------------------------
    def verify(self, *, on_progress: Progress | None = None) -> VerifyReport:
        """Check the ledger against itself; writes nothing (works on a ``readonly`` ledger).

        The projection must equal a replay of history, the counters a recount, the clusters a rebuild, the
        immutability triggers must be in place and refuse a change (tried in a transaction that is always
        rolled back, on probe rows of negative ids), and every hash chain of history must recompute from
        its rows (SPEC 14). ``report.ok`` is true when nothing disagrees; ``report.digest`` is one digest
        of all history (``verify --digest``). ``on_progress`` is told of the "verify" phase (events) and the
        "clusters" phase (failures read again to compare the clusters with a rebuild).
        """
        from failure_aware.diagnostics import verify as checks

        with self.store.read(snapshot=True) as conn:  # one snapshot throughout, while workers write
            report = checks.verify(conn, self.config.policies, on_progress=on_progress)
        refusals = self.store.probe_triggers()
        if refusals:
            report = dataclasses.replace(report, problems=report.problems + tuple(refusals))
        return report


    # -- the HTTP API (serve): tokens, remote claims, counters ------------------------------------------
    def create_token(self, name: str, scope: Scope | str, *, actor: str | None = None) -> NewToken:
        """Make an API token; the returned secret is shown once, the database keeps only its hash."""
        from failure_aware.events import token_rows as stored_tokens

        validation.name("name", name)
        chosen = api_tokens.scope(scope)
        actor = validation.name("actor", actor or operator_name())
        secret = api_tokens.new_secret()
        with self.store.write() as conn:
            token = stored_tokens.create(conn, name=name, scope=chosen, secret=secret, created_by=actor,
                                         now_us=self.store.now_us())
        return NewToken(token, secret)

    def tokens(self) -> list[ApiToken]:
        """Every API token, active and revoked (names, scopes, times; never secrets)."""
        from failure_aware.events import token_rows as stored_tokens

        with self.store.read() as conn:
            return stored_tokens.listed(conn)

    def revoke_token(self, name: str) -> ApiToken:
        """Revoke a token (``NotFound`` if unknown): it stops opening the API at once, on every server."""
        from failure_aware.events import token_rows as stored_tokens

        validation.name("name", name)
        with self.store.write() as conn:
            return stored_tokens.revoke(conn, name, now_us=self.store.now_us())

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token whose secret ``secret`` is, or None (the secret is hashed, never stored)."""
        from failure_aware.events import token_rows as stored_tokens

        if not isinstance(secret, str) or not secret or len(secret) > api_tokens.MAX_SECRET_CHARS:
            return None
        with self.store.read() as conn:
            return stored_tokens.authenticate(conn, secret)

    def has_tokens(self) -> bool:
        """Whether any active API token exists (``serve`` refuses a non-loopback address without one)."""
        from failure_aware.events import token_rows as stored_tokens

        with self.store.read() as conn:
            return stored_tokens.any_active(conn)

    def held_claim(self, token: str) -> Claim:
        """The claim that ``token`` (from ``claim``/``claim_due``) still holds, for a runner that kept only
        the token (a remote one); ``StaleClaim`` if it holds nothing any more. Finish it with ``finish``,
        which checks the token again in its own transaction."""
        event_id = claims.event_id_of_token(token)
        with self.store.read() as conn:
            return claims.held_claim(conn, event_id, token)

    def attempt_totals(self) -> dict[tuple[str, str], int]:
        """Attempts ever recorded per (event type, outcome), read from counters (``/metrics``)."""
        from failure_aware.events import totals

        with self.store.read() as conn:
            return totals.stored(conn)

    # -- schema --------------------------------------------------------------------------------------
    @staticmethod
    def schema_status(url: str | None = None) -> SchemaStatus:
        """The schema version of the database at ``url`` as found, without opening it as a ledger: nothing
        is checked, created or upgraded (``failure-aware db version``; a missing SQLite file stays missing).
        """
        return inspect_schema(url)

    def upgrade(self) -> list[str]:
        """Apply pending schema migrations; returns their descriptions."""
        return [f"{m.version}: {m.description}" for m in self.store.upgrade()]


def _lease_us(lease_seconds: float) -> int:
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int | float) or not (
        0 < lease_seconds <= 7 * 86400
    ):
        raise ValidationError(
            f"lease_seconds must be a number of seconds in (0, 604800], got {lease_seconds!r}"
        )
    return int(lease_seconds * 1_000_000)


def _state(value: State | str) -> State:
    try:
        return State(str(value).upper())
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise ValidationError(f"unknown state {value!r}; use one of {allowed}") from None


def _retry_after_seconds(value: float | datetime | None, at_us: int) -> float | None:
    """A failure's ``retry_after`` as seconds after its ``at``: a number of seconds (>= 0), or a time (a
    time already past means no wait)."""
    checked = validation.retry_after(value)
    if isinstance(checked, datetime):
        return max(0.0, ((checked - EPOCH) // timedelta(microseconds=1) - at_us) / 1_000_000)
    return checked


def _duration_us(seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 10**9:
        raise ValidationError(f"duration_seconds must be a number of seconds >= 0, got {seconds!r}")
    return round(seconds * 1_000_000)


__all__ = ["Handler", "Ledger", "operator_name"]



def _binary(stream: IO[str] | IO[bytes]) -> bool:
    """Whether ``stream`` yields bytes (a file opened ``rb``, ``sys.stdin.buffer``, a gzip file, whose
    ``mode`` is a number)."""
    import io

    if isinstance(stream, io.BufferedIOBase | io.RawIOBase):
        return True
    mode = getattr(stream, "mode", "")
    return isinstance(mode, str) and "b" in mode


def _bytes_left(stream: IO[str] | IO[bytes]) -> int | None:
    """The bytes a regular file has left to read from here (None for a pipe or anything else)."""
    import os
    import stat

    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(0, info.st_size - stream.tell())
    except (OSError, ValueError, AttributeError):
        return None
