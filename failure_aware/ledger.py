"""``Ledger``: the Python API of failure-aware (SPEC section 9). The CLI and any server only wrap it.

Every method validates its input before it writes, runs in one transaction, and raises only errors of the
``FailureAwareError`` tree. Nothing runs in the background: a handler runs only inside ``run``,
``retry_due`` or a worker loop the caller started.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import select

from . import states
from .config import Config, load_config
from .core import claims, operator, queries, recording, validation
from .core.recording import Reported
from .diagnostics.verify import VerifyReport
from .errors import ValidationError
from .models import Annotation, AttemptResult, Claim, Event, EventDetail
from .states import State, Step
from .storage.store import Store
from .storage.tables import event_state
from .timeutil import Clock, aware, to_us, utc_now

Handler = Callable[[Event], object]


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
    ) -> None:
        self.config = config if config is not None else load_config()
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.store = Store(url, readonly=readonly, create=create, upgrade=upgrade, clock=clock)

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
        moment = aware(at, field=field)
        return to_us(moment if moment is not None else self.clock())

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
        """Record an event as PENDING; with an existing ``(event_type, key)`` return that one, writing nothing."""
        validation.event_type(event_type)
        if key is not None:
            validation.key(key)
        _, payload_json = validation.payload(dict(payload) if isinstance(payload, Mapping) else payload,
                                             self.max_payload_bytes)
        validation.name("actor", actor)
        detected_us = self._now_us(at)
        with self.store.write() as conn:
            event, _created = recording.detect(
                conn, event_type=event_type, key=key, payload_json=payload_json,
                detected_at_us=detected_us, now_us=self.store.now_us(), actor=actor,
            )
        return event

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
    ) -> AttemptResult:
        """Record an attempt the caller ran itself (claim and finish in one step) and its outcome."""
        validation.event_id(event_id)
        if not isinstance(ok, bool):
            raise ValidationError(f"ok must be True or False, got {ok!r}")
        _check_outcome_fields(ok, error_type, error)
        validation.name("actor", actor)
        at_us = self._now_us(at)
        with self.store.write() as conn:
            row = recording.lock_state(conn, event_id)
            current = State(row.state)
            if current not in states.from_states(Step.REPORT):
                states.require(Step.REPORT, current, State.SUCCEEDED, event_id)
            recording.check_retry_time(row, at_us, force=force)
            recording.check_attempt_time(row, at_us)
            forced = bool(force and row.state == State.FAILED and (row.next_retry_at_us or 0) > at_us)
            return recording.settle(
                conn, row, Reported(ok=ok, at_us=at_us, error_type=error_type, error=error),
                step=Step.REPORT, policy=self.config.policies.for_type(row.event_type), actor=actor,
                forced=forced, now_us=self.store.now_us(),
            )

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
    ) -> AttemptResult:
        """Record the outcome of a claimed attempt; ``StaleClaim`` if the claim no longer holds the event."""
        if not isinstance(claim, Claim):
            raise ValidationError("finish needs the Claim returned by claim() or claim_due()")
        _check_outcome_fields(ok, error_type, error)
        at_us = self._now_us(at)
        with self.store.write() as conn:
            row = claims.lock_claimed(conn, claim.event.id, claim.token)
            return recording.settle(
                conn, row, Reported(ok=ok, at_us=max(at_us, row.claimed_at_us), error_type=error_type,
                                    error=error),
                step=Step.FINISH, policy=self.config.policies.for_type(row.event_type),
                actor=row.claimed_by, forced=bool(row.claim_forced), started_at_us=row.claimed_at_us,
                now_us=self.store.now_us(),
            )

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

        A handler that returns (any value) succeeded; one that raises an ``Exception`` failed, recorded with
        the exception's type name and message. The exception is not re-raised: the failure is data.
        """
        if not callable(handler):
            raise ValidationError("handler must be callable: handler(event)")
        claim = self.claim(event_id, worker=worker, lease_seconds=lease_seconds, force=force)
        return self._execute(claim, handler)

    def _execute(self, claim: Claim, handler: Handler) -> AttemptResult:
        try:
            handler(claim.event)
        except Exception as exc:  # the handler's failure is recorded, never raised into the caller
            return self.finish(claim, False, error_type=type(exc).__name__, error=_exception_text(exc))
        return self.finish(claim, True)

    def retry_due(
        self,
        handler: Handler,
        *,
        event_type: str | None = None,
        limit: int | None = None,
        worker: str | None = None,
        batch_size: int = 20,
        lease_seconds: float = claims.DEFAULT_LEASE_SECONDS,
        should_stop: Callable[[], bool] | None = None,
        on_result: Callable[[AttemptResult], None] | None = None,
    ) -> list[AttemptResult]:
        """Run every event due now (PENDING, or FAILED past ``next_retry_at``), at most ``limit``.

        Claims in batches of ``batch_size``; ``should_stop`` is checked between attempts (a worker's Ctrl-C),
        after which claims taken but not started are handed back by recording nothing: they expire and
        ``recover`` closes them. To avoid that, keep ``batch_size`` small in interactive loops.
        """
        if not callable(handler):
            raise ValidationError("handler must be callable: handler(event)")
        validation.positive_int("limit", limit)
        results: list[AttemptResult] = []
        while limit is None or len(results) < limit:
            want = batch_size if limit is None else min(batch_size, limit - len(results))
            taken = self.claim_due(limit=want, event_type=event_type, worker=worker, lease_seconds=lease_seconds)
            if not taken:
                break
            for claim in taken:
                if should_stop is not None and should_stop():
                    return results
                result = self._execute(claim, handler)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results

    def due(self, *, event_type: str | None = None, limit: int = 100) -> list[Event]:
        """Events due now, oldest due first, without claiming them (``retry --due --dry-run``)."""
        with self.store.read() as conn:
            ids = conn.execute(
                select(event_state.c.event_id)
                .where(event_state.c.due_at_us <= self.store.now_us(),
                       *([event_state.c.event_type == event_type] if event_type else []))
                .order_by(event_state.c.due_at_us, event_state.c.event_id)
                .limit(limit)
            ).scalars().all()
            return [recording.load_event(conn, i) for i in ids]

    def recover(self, *, dry_run: bool = False, actor: str = "system") -> list[AttemptResult] | list[Event]:
        """Close claims whose lease expired with an ``abandoned`` attempt (FAILED or DEAD by the policy).

        With ``dry_run`` nothing is written and the events that would be recovered are returned.
        """
        now_us = self.store.now_us()
        if dry_run:
            with self.store.read() as conn:
                return [recording.load_event(conn, r.event_id) for r in claims.expired_claims(conn, now_us)]
        with self.store.write() as conn:
            results = []
            for row in claims.expired_claims(conn, now_us):
                results.append(recording.settle(
                    conn, row,
                    Reported(ok=False, abandoned=True, at_us=max(now_us, row.claimed_at_us),
                             error_type="LeaseExpired", error=claims.abandoned_message(row)),
                    step=Step.RECOVER, policy=self.config.policies.for_type(row.event_type), actor=actor,
                    started_at_us=row.claimed_at_us, now_us=now_us,
                ))
            return results

    # -- reading -------------------------------------------------------------------------------------
    def events(
        self,
        *,
        state: State | str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[Event]:
        """Events newest first, filtered by state, type and detection time; page with ``before_id``."""
        state_value = _state(state) if state is not None else None
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit, allow_none=False)
        since_us = to_us(aware(since, field="since")) if since is not None else None  # type: ignore[arg-type]
        with self.store.read() as conn:
            return queries.list_events(
                conn, state=state_value, event_type=event_type, since_us=since_us, limit=limit,
                before_id=before_id,
            )

    def get(self, event_id: int) -> Event:
        """One event with its current state (``NotFound`` if unknown)."""
        validation.event_id(event_id)
        with self.store.read() as conn:
            return recording.load_event(conn, event_id)

    def show(self, event_id: int) -> EventDetail:
        """An event with its attempts, transitions and annotations (``NotFound`` if unknown)."""
        validation.event_id(event_id)
        with self.store.read() as conn:
            return queries.event_detail(conn, event_id)

    def iter_events(self) -> Iterator[Event]:
        """Every event in id order, streamed in pages."""
        with self.store.read() as conn:
            yield from queries.iter_events(conn)

    # -- interchange (import / export) -------------------------------------------------------------------

    # -- operator actions (revive, bury, annotate) ------------------------------------------------------
    def bury(self, event_id: int, *, actor: str | None = None, reason: str = "given up by operator") -> Event:
        """Give up on a FAILED event: it becomes DEAD (recorded with actor and reason)."""
        validation.event_id(event_id)
        actor = validation.name("actor", actor or operator_name())
        validation.text("reason", reason, required=True)
        with self.store.write() as conn:
            operator.bury(conn, event_id, actor=actor, reason=reason, now_us=self.store.now_us())
            return recording.load_event(conn, event_id)

    def revive(self, event_id: int, *, actor: str | None = None, reason: str = "revived by operator") -> Event:
        """Bring a DEAD event back to PENDING; attempt numbers continue, the retry budget restarts."""
        validation.event_id(event_id)
        actor = validation.name("actor", actor or operator_name())
        validation.text("reason", reason, required=True)
        with self.store.write() as conn:
            operator.revive(conn, event_id, actor=actor, reason=reason, now_us=self.store.now_us())
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
    ) -> list[int]:
        """Revive every event that died at or after ``since`` (of one type); returns the ids revived.

        With ``dry_run`` nothing is written and the ids that would be revived are returned. The whole bulk
        revive is one transaction: all listed events are revived, or none.
        """
        since_us = to_us(aware(since, field="since"))  # type: ignore[arg-type]
        if event_type is not None:
            validation.event_type(event_type)
        validation.positive_int("limit", limit)
        actor = validation.name("actor", actor or operator_name())
        validation.text("reason", reason, required=True)
        if dry_run:
            with self.store.read() as conn:
                return operator.dead_since(conn, event_type=event_type, since_us=since_us, limit=limit)
        with self.store.write() as conn:
            ids = operator.dead_since(conn, event_type=event_type, since_us=since_us, limit=limit)
            now_us = self.store.now_us()
            for event_id in ids:
                operator.revive(conn, event_id, actor=actor, reason=reason, now_us=now_us)
            return ids

    def annotate(self, event_id: int, text: str, *, author: str | None = None) -> Annotation:
        """Add a note to an event. Notes are history: never changed, only added to."""
        validation.event_id(event_id)
        validation.text("text", text, required=True)
        author = validation.name("author", author or operator_name())
        with self.store.write() as conn:
            return operator.annotate_event(conn, event_id, text, author=author, now_us=self.store.now_us())


    # -- health ----------------------------------------------------------------------------------------

    # -- correlation -----------------------------------------------------------------------------------

    # -- verify ----------------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Check the ledger against itself; writes nothing (works on a ``readonly`` ledger).

        The projection must equal a replay of history, the counters a recount, the clusters a rebuild, and
        the immutability triggers must be in place. ``report.ok`` is true when nothing disagrees.
        """
        from .diagnostics import verify as checks

        with self.store.read() as conn:
            checks.consistent_snapshot(conn)  # first statement of the transaction: one snapshot throughout
            return checks.verify(conn, self.config.policies)


    # -- schema --------------------------------------------------------------------------------------
    def upgrade(self) -> list[str]:
        """Apply pending schema migrations; returns their descriptions."""
        return [f"{m.version}: {m.description}" for m in self.store.upgrade()]


def _lease_us(lease_seconds: float) -> int:
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int | float) or not (
        0 < lease_seconds <= 7 * 86400
    ):
        raise ValidationError(f"lease_seconds must be a number of seconds in (0, 604800], got {lease_seconds!r}")
    return int(lease_seconds * 1_000_000)


def _state(value: State | str) -> State:
    try:
        return State(str(value).upper())
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise ValidationError(f"unknown state {value!r}; use one of {allowed}") from None


def _check_outcome_fields(ok: bool, error_type: str | None, error: str | None) -> None:
    validation.optional_name("error_type", error_type)
    validation.text("error", error, limit=validation.MAX_ERROR_CHARS)
    if ok and (error_type or error):
        raise ValidationError("a succeeded attempt takes no error_type or error")


def _exception_text(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return text[: validation.MAX_ERROR_CHARS]


__all__ = ["Handler", "Ledger", "operator_name"]

