"""Writing history: detect, the outcome of an attempt, operator state changes.

Each function runs inside a write transaction the caller owns. The pattern, on both backends: read the
projection row (``FOR UPDATE`` on PostgreSQL), check the step against ``states.LEGAL``, then guard the
UPDATE with the state just read and check the row count, and append the history rows. Either everything
lands or nothing does.

An attempt's outcome is recorded in two steps: ``decide`` (pure: the attempt, the next state by the policy,
the rows to write) and ``write_settlements`` (the statements). ``settle`` does both for one attempt; a
worker finishing a group of claims (``claims.finish_claims``) decides each and writes them all at once,
with the same number of statements as one.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from failure_aware.domain import states
from failure_aware.domain.errors import InvalidTransition, NotFound, RetryTooEarly, ValidationError
from failure_aware.domain.fingerprint import fingerprint
from failure_aware.domain.policy import PolicySet, RetryPolicy, decide_after_failure
from failure_aware.domain.records import Attempt, AttemptResult, Event
from failure_aware.domain.states import Outcome, State, Step
from failure_aware.domain.timeutil import format_time, from_us, opt_from_us, to_us
from failure_aware.events import counters, totals
from failure_aware.events.rows import event_from_row, event_select
from failure_aware.storage import batch, chain
from failure_aware.storage.batch import Check
from failure_aware.storage.tables import attempt, event_detected, event_state, transition

_LOCK = {pg: (select(event_state).where(event_state.c.event_id == bindparam("b_id")).with_for_update()
              if pg else select(event_state).where(event_state.c.event_id == bindparam("b_id")))
         for pg in (False, True)}


def lock_state(conn: Connection, event_id: int) -> Row[Any]:
    """The projection row of an event, locked for this transaction; ``NotFound`` if there is none."""
    row = conn.execute(_LOCK[conn.dialect.name == "postgresql"], {"b_id": event_id}).first()
    if row is None:
        raise NotFound(f"no event with id {event_id}")
    return row


def load_event(conn: Connection, event_id: int) -> Event:
    """The event with its current state; ``NotFound`` if there is none."""
    row = conn.execute(event_select().where(event_detected.c.id == event_id)).first()
    if row is None:
        raise NotFound(f"no event with id {event_id}")
    return event_from_row(row)


def detect(
    conn: Connection,
    *,
    event_type: str,
    key: str | None,
    payload_json: str,
    detected_at_us: int,
    now_us: int,
    actor: str,
) -> tuple[Event, bool]:
    """Record a new event as PENDING, or return the existing one of (type, key); ``(event, created)``."""
    if key is None:
        key = uuid.uuid4().hex
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    ins = dialect_insert(event_detected)
    event_row: dict[str, Any] = {"event_type": event_type, "key": key, "payload": payload_json,
                                 "detected_at_us": detected_at_us, "recorded_at_us": now_us}
    head = chain.link(chain.EMPTY, "event_detected", event_row)
    stmt = ins.values(**event_row).on_conflict_do_nothing(
        index_elements=["event_type", "key"]
    ).returning(event_detected.c.id)
    new_id = conn.execute(stmt).scalar()
    if new_id is None:
        existing = conn.execute(
            select(event_detected.c.id).where(
                event_detected.c.event_type == event_type, event_detected.c.key == key
            )
        ).scalar_one()
        return load_event(conn, existing), False
    transition_row: dict[str, Any] = {"event_id": new_id, "at_us": detected_at_us, "from_state": None,
                                      "to_state": State.PENDING, "actor": actor, "reason": "detected",
                                      "attempt_number": None}
    head = chain.link(head, "transition", transition_row)
    conn.execute(
        insert(event_state).values(
            event_id=new_id, event_type=event_type, state=State.PENDING, detected_at_us=detected_at_us,
            attempt_count=0, budget_failures=0, due_at_us=detected_at_us, updated_at_us=now_us,
            chain_seq=head.seq, chain_hash=head.hash,
        )
    )
    conn.execute(insert(transition).values(**transition_row))
    counters.apply(conn, counters.moved(event_type, None, State.PENDING))
    return load_event(conn, new_id), True


def failure_fingerprint(error_type: str | None, error: str | None) -> str:
    """The fingerprint stored with a failed or abandoned attempt: of its message, else of its error type.

    Shared by ``settle`` and the importer so both store the same value for the same failure.
    """
    return fingerprint(error or error_type or "")


@dataclass(frozen=True)
class Reported:
    """An attempt's outcome as a caller gives it, before the policy decides the next state."""

    ok: bool
    at_us: int
    error_type: str | None = None
    error: str | None = None
    abandoned: bool = False
    permanent: bool = False  # the failure says retrying is pointless: DEAD at once (SPEC 4)
    retry_after_seconds: float | None = None  # the failure's own earliest retry, after ``at`` (SPEC 4)
    detail_json: str | None = None  # a checked JSON object (validation.detail)
    traceback: str | None = None  # checked (validation.traceback_text)
    duration_us: int | None = None  # how long the handler ran


def check_retry_time(row: Row[Any], at_us: int, *, force: bool) -> None:
    """Refuse to try a FAILED event before its ``next_retry_at`` unless forced (SPEC section 4)."""
    early = row.next_retry_at_us is not None and at_us < row.next_retry_at_us
    if row.state == State.FAILED and early and not force:
        when = from_us(row.next_retry_at_us)
        raise RetryTooEarly(
            f"event {row.event_id} may be retried from {format_time(when)} "
            f"({format_time(from_us(at_us))} is too early)",
            when,
        )


def earliest_attempt_us(row: Row[Any]) -> int:
    """The earliest time the next attempt of the event in ``row`` may have: its detection or its previous
    attempt, whichever is later (history stays in time order)."""
    return int(max(row.detected_at_us, row.last_attempt_at_us or row.detected_at_us))


def check_attempt_time(row: Row[Any], at_us: int) -> None:
    """An attempt cannot predate its event or the previous attempt: history stays in time order."""
    floor = earliest_attempt_us(row)
    if at_us < floor:
        raise ValidationError(
            f"event {row.event_id}: attempt time {format_time(from_us(at_us))} is before "
            f"{format_time(from_us(floor))} (its detection or previous attempt)"
        )


# settle's statements, built once: every attempt runs them, and building and keying Core statements per
# call cost more client CPU than executing them (fenced: finish and recover also check the claim token).
_SETTLE_GUARDED = {
    fenced: update(event_state).where(
        event_state.c.event_id == bindparam("b_event_id"), event_state.c.state == bindparam("b_state"),
        *([event_state.c.claim_token == bindparam("b_token")] if fenced else []),
    ).values(
        state=bindparam("b_target"), attempt_count=bindparam("b_number"),
        budget_failures=bindparam("b_budget"), next_retry_at_us=bindparam("b_next"),
        due_at_us=bindparam("b_next"), claim_token=None, claimed_by=None, claimed_at_us=None,
        lease_expires_at_us=None, claim_forced=False,
        last_error_type=bindparam("b_error_type"), last_error=bindparam("b_error"),
        last_attempt_at_us=bindparam("b_at"), updated_at_us=bindparam("b_now"),
        chain_seq=bindparam("b_seq"), chain_hash=bindparam("b_hash"),
    )
    for fenced in (False, True)
}
_INSERT_ATTEMPT = insert(attempt)
_INSERT_TRANSITION = insert(transition)


@dataclass(frozen=True)
class Settlement:
    """One attempt's outcome decided but not yet written: the rows ``write_settlements`` writes."""

    fenced: bool  # the projection UPDATE also checks the claim token (finish, recover)
    update: dict[str, Any]  # parameters of _SETTLE_GUARDED
    attempt_row: dict[str, Any]
    transition_row: dict[str, Any]
    moved: tuple[str, State, State]  # (event type, from, to) for the counters
    result: AttemptResult


def report(
    conn: Connection, event_id: int, reported: Reported, *, force: bool, policies: PolicySet, actor: str,
    now_us: int,
) -> AttemptResult:
    """``Ledger.report``: an attempt the caller ran itself, claimed and settled in one step.

    Refused (nothing written) when the event is in no state an attempt can start from, when its retry is
    not due yet and ``force`` is not given (``RetryTooEarly``), or when the attempt would start before
    the event's last recorded moment. A forced early retry is recorded as forced.
    """
    row = lock_state(conn, event_id)
    current = State(row.state)
    if current not in states.from_states(Step.REPORT):
        states.require(Step.REPORT, current, State.SUCCEEDED, event_id)
    check_retry_time(row, reported.at_us, force=force)
    check_attempt_time(row, reported.at_us)
    forced = bool(force and row.state == State.FAILED and (row.next_retry_at_us or 0) > reported.at_us)
    return settle(conn, row, reported, step=Step.REPORT, policy=policies.for_type(row.event_type),
                  actor=actor, forced=forced, now_us=now_us)


def settle(
    conn: Connection,
    row: Row[Any],
    outcome: Reported,
    *,
    step: Step,
    policy: RetryPolicy,
    actor: str,
    forced: bool = False,
    started_at_us: int | None = None,
    now_us: int,
) -> AttemptResult:
    """Record one attempt of the event in ``row`` and move it to the state its outcome and policy give."""
    settlement = decide(row, outcome, step=step, policy=policy, actor=actor, forced=forced,
                        started_at_us=started_at_us, now_us=now_us)
    write_settlements(conn, [settlement])
    return settlement.result


def decide(
    row: Row[Any],
    outcome: Reported,
    *,
    step: Step,
    policy: RetryPolicy,
    actor: str,
    forced: bool = False,
    started_at_us: int | None = None,
    now_us: int,
) -> Settlement:
    """The attempt of the event in ``row`` that ``outcome`` records, and the state it leads to (no I/O).

    Raises ``InvalidTransition`` when ``step`` may not make that move.
    """
    event_id = row.event_id
    number = row.attempt_count + 1
    current = State(row.state)
    next_retry_us: int | None = None
    budget = row.budget_failures
    if outcome.ok:
        kind, target, reason = Outcome.SUCCEEDED, State.SUCCEEDED, f"attempt {number} succeeded"
    else:
        kind = Outcome.ABANDONED if outcome.abandoned else Outcome.FAILED
        budget += 1
        decision = decide_after_failure(
            policy, budget, outcome.error_type, from_us(outcome.at_us), event_id,
            permanent=outcome.permanent, retry_after_seconds=outcome.retry_after_seconds,
        )
        if decision.dead:
            target, reason = State.DEAD, f"attempt {number} {kind}: {decision.reason}"
        else:
            assert decision.next_retry_at is not None
            next_retry_us = to_us(decision.next_retry_at)
            target = State.FAILED
            reason = f"attempt {number} {kind}; retry from {format_time(decision.next_retry_at)}"
    states.require(step, current, target, event_id)
    fenced = step is Step.FINISH or step is Step.RECOVER
    error_type = None if outcome.ok else outcome.error_type
    error = None if outcome.ok else outcome.error
    update_params = {
        "b_event_id": event_id, "b_state": current, "b_target": target, "b_number": number,
        "b_budget": budget, "b_next": next_retry_us, "b_at": outcome.at_us, "b_now": now_us,
        "b_error_type": error_type, "b_error": error,
    }
    if fenced:
        update_params["b_token"] = row.claim_token
    attempt_row = {
        "event_id": event_id, "event_type": row.event_type, "number": number,
        "started_at_us": started_at_us, "at_us": outcome.at_us, "outcome": kind,
        "error_type": error_type, "error": error,
        "fingerprint": None if outcome.ok else failure_fingerprint(outcome.error_type, outcome.error),
        "forced": forced, "actor": actor, "traceback": None if outcome.ok else outcome.traceback,
        "duration_us": outcome.duration_us, "detail": outcome.detail_json,
    }
    transition_row = {
        "event_id": event_id, "at_us": outcome.at_us, "from_state": current, "to_state": target,
        "actor": actor, "reason": reason + (" (forced)" if forced else ""), "attempt_number": number,
    }
    head = chain.link(chain.head_of(row), "attempt", attempt_row)
    head = chain.link(head, "transition", transition_row)
    update_params["b_seq"], update_params["b_hash"] = head.seq, head.hash
    result = AttemptResult(
        event_id=event_id,
        attempt=Attempt(
            event_id=event_id, number=number, at=from_us(outcome.at_us), outcome=kind,
            started_at=opt_from_us(started_at_us), error_type=error_type, error=error,
            fingerprint=attempt_row["fingerprint"], forced=forced, actor=actor,
            traceback=attempt_row["traceback"],
            duration_seconds=None if outcome.duration_us is None else outcome.duration_us / 1_000_000,
            detail=None if outcome.detail_json is None else json.loads(outcome.detail_json),
        ),
        state=target,
        next_retry_at=opt_from_us(next_retry_us),
        reason=reason,
    )
    return Settlement(fenced, update_params, attempt_row, transition_row, (row.event_type, current, target),
                      result)


def write_settlements(conn: Connection, settlements: Sequence[Settlement]) -> None:
    """Write decided attempts: one guarded UPDATE of the projection, one INSERT per history table and one
    counter upsert for all of them, whatever their number (``executemany`` when there are several).

    The statements are sent together (``storage.batch``): at once, or with the next read or the commit of
    a transaction that batches its writes (``Ledger.cycle``). The rows must be locked by the caller's
    transaction; a guard that does not match (the row changed meanwhile: a bug or a foreign writer) raises
    ``InvalidTransition``, which rolls all of them back.
    """
    if not settlements:
        return
    with batch.writes(conn) as out:
        for fenced in (False, True):
            updates = [s.update for s in settlements if s.fenced is fenced]
            if updates:
                guard = _guard([u["b_event_id"] for u in updates])
                out.execute(_SETTLE_GUARDED[fenced], updates, check=guard)
        out.execute(_INSERT_ATTEMPT, [s.attempt_row for s in settlements])
        totals.apply(conn, totals.of_rows(s.attempt_row for s in settlements))
        out.execute(_INSERT_TRANSITION, [s.transition_row for s in settlements])
        delta: Counter[counters.Key] = Counter()
        for event_type, old, new in (s.moved for s in settlements):
            delta.update(_moved(event_type, old, new))  # update(): keeps the negative counts
        counters.apply(conn, delta)


def _guard(ids: list[int]) -> Check:
    """The row-count check of the guarded UPDATE of the events ``ids``."""
    def check(changed: int) -> InvalidTransition | None:
        if changed == len(ids):
            return None
        which = f"event {ids[0]}" if len(ids) == 1 else f"one of events {', '.join(map(str, ids))}"
        return InvalidTransition(f"{which} changed while its attempt was being recorded; "
                                 "nothing was recorded, try again")
    return check


def change_state(
    conn: Connection,
    row: Row[Any],
    *,
    step: Step,
    target: State,
    actor: str,
    reason: str,
    now_us: int,
    values: dict[str, Any],
) -> None:
    """An operator's state change with no attempt (bury, revive): guarded update plus a history row."""
    current = State(row.state)
    states.require(step, current, target, row.event_id)
    transition_row: dict[str, Any] = {"event_id": row.event_id, "at_us": now_us, "from_state": current,
                                      "to_state": target, "actor": actor, "reason": reason,
                                      "attempt_number": None}
    head = chain.link(chain.head_of(row), "transition", transition_row)
    changed = conn.execute(
        update(event_state)
        .where(event_state.c.event_id == row.event_id, event_state.c.state == current)
        .values(state=target, updated_at_us=now_us, chain_seq=head.seq, chain_hash=head.hash, **values)
    ).rowcount
    if changed != 1:
        raise InvalidTransition(f"event {row.event_id} changed concurrently; try again")
    conn.execute(insert(transition).values(**transition_row))
    counters.apply(conn, _moved(row.event_type, current, target))


def _moved(event_type: str, old: State, new: State) -> Counter[counters.Key]:
    return counters.moved(event_type, old, new) if old != new else Counter()

