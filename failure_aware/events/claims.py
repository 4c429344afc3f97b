"""Running work: claim (fenced, leased), finish, and recovery of claims whose lease expired.

A claim hands the runner a token; finishing requires the token still to hold the event, so a runner that
lost its claim (recovered, or claimed again after recovery) cannot overwrite what happened since
(``StaleClaim``). Due work is claimed in batches: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so many
workers on many hosts take disjoint events; on SQLite inside one short ``BEGIN IMMEDIATE``.

Claiming is the hot path of every worker, so a batch costs a fixed number of statements whatever its size:
one SELECT (the projection joined with the event, locked), one UPDATE for all rows, one INSERT of the
transitions, and the counter upserts. The statements are built once, with bind parameters, and the writes
are sent together (``storage.batch``: compiled once, one round trip on PostgreSQL).

Finishing is batched the same way (``finish_claims``): a group of outcomes costs one locking SELECT, one
UPDATE, one INSERT per history table and one counter upsert, in one transaction, and each outcome in it is
fenced on its own: a stale claim is reported for that claim (``StaleClaim``), the rest are recorded. The
worker records the outcomes that came back with the next claims and the lease renewals of the handlers
still running, in one transaction (``Ledger.cycle``, see ``failure_aware.worker``); ``Ledger.finish`` is a
group of one. Every history row written here is linked into its event's hash chain (``core.chain``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, any_, bindparam, func, insert, or_, select, text, update

from failure_aware.domain import states
from failure_aware.domain.errors import InvalidTransition, NotFound, StaleClaim, StorageError, ValidationError
from failure_aware.domain.policy import PolicySet
from failure_aware.domain.records import AttemptResult, Claim
from failure_aware.domain.states import State, Step
from failure_aware.domain.timeutil import format_time, from_us, opt_from_us, to_us
from failure_aware.events import counters, recording
from failure_aware.events.recording import Reported, check_retry_time
from failure_aware.events.rows import attempt_from_row, event_from_row, event_select
from failure_aware.storage import batch, chain
from failure_aware.storage.tables import attempt, event_state, transition

DEFAULT_LEASE_SECONDS = 300.0

_CLAIMABLE = tuple(sorted(states.from_states(Step.CLAIM)))

# The projection row joined with its event: everything a Claim's Event needs, read once.
_CLAIM_COLUMNS = event_select().add_columns(
    event_state.c.event_id, event_state.c.next_retry_at_us, event_state.c.claim_token,
    event_state.c.claimed_at_us, event_state.c.claim_forced,
    event_state.c.chain_seq, event_state.c.chain_hash,
)


def _due_query(*, postgres: bool, typed: bool) -> Any:
    query = _CLAIM_COLUMNS.where(event_state.c.due_at_us <= bindparam("b_now"))
    if typed:
        query = query.where(event_state.c.event_type == bindparam("b_type"))
    # Oldest due first, ties by id. SQLite's index on due_at_us holds the rowid (= event_id), so this order
    # is free there. PostgreSQL reads ix_event_state_due in order and sorts only rows sharing a due time
    # (an incremental sort): cheap, unless thousands share one (a bulk import or revive at one instant:
    # 25 ms per claim at 20,000), which an index on (due_at_us, event_id) would avoid.
    query = query.order_by(event_state.c.due_at_us, event_state.c.event_id).limit(bindparam("b_limit"))
    return query.with_for_update(skip_locked=True, of=event_state) if postgres else query


_DUE = {(pg, typed): _due_query(postgres=pg, typed=typed) for pg in (False, True) for typed in (False, True)}

_ONE = {
    False: _CLAIM_COLUMNS.where(event_state.c.event_id == bindparam("b_event_id")),
    True: _CLAIM_COLUMNS.where(event_state.c.event_id == bindparam("b_event_id")).with_for_update(
        of=event_state
    ),
}

# One UPDATE statement claims the whole batch (executemany: each row gets its own token and chain head).
# A token is the batch's random prefix plus the event id: unique per claim (a later claim of the same event
# draws a new prefix).
_TAKE = (
    update(event_state)
    # executemany cannot expand IN lists: the claimable states as ORs
    .where(event_state.c.event_id == bindparam("b_id"), or_(*(event_state.c.state == s for s in _CLAIMABLE)))
    .values(
        state=State.IN_FLIGHT,
        claim_token=bindparam("b_token"),
        claimed_by=bindparam("b_worker"),
        claimed_at_us=bindparam("b_now"),
        lease_expires_at_us=bindparam("b_expires"),
        claim_forced=bindparam("b_forced"),
        due_at_us=None,
        next_retry_at_us=None,  # set only while FAILED; the attempt's outcome sets it anew
        updated_at_us=bindparam("b_now"),
        chain_seq=bindparam("b_seq"),
        chain_hash=bindparam("b_hash"),
    )
)
_INSERT_TRANSITIONS = insert(transition)


def default_worker_id() -> str:
    """``host:pid``: names the runner in history and in stuck-claim diagnostics."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_one(
    conn: Connection, event_id: int, *, worker: str, lease_us: int, now_us: int, force: bool
) -> Claim:
    """Claim one event (PENDING, or FAILED when due or forced) for ``worker``."""
    row = conn.execute(_ONE[conn.dialect.name == "postgresql"], {"b_event_id": event_id}).first()
    if row is None:
        raise NotFound(f"no event with id {event_id}")
    states.require(Step.CLAIM, State(row.state), State.IN_FLIGHT, event_id)
    check_retry_time(row, now_us, force=force)
    forced = bool(force and row.state == State.FAILED and (row.next_retry_at_us or 0) > now_us)
    return _take(conn, [row], worker=worker, lease_us=lease_us, now_us=now_us, forced=forced)[0]


def claim_due(
    conn: Connection,
    *,
    worker: str,
    lease_us: int,
    now_us: int,
    limit: int,
    event_type: str | None = None,
    prefix: str | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` events that are due now, oldest due first, skipping rows others hold.

    ``prefix`` starts every token of the batch (default: a new random one): a worker that lost its
    connection during the commit finds the claims it may have taken by it (``adopt``). In a transaction
    that batches its writes (``Ledger.cycle``), the SELECT is sent with the writes queued (it sees them)."""
    query = _DUE[(conn.dialect.name == "postgresql", event_type is not None)]
    params: dict[str, Any] = {"b_now": now_us, "b_limit": limit}
    if event_type is not None:
        params["b_type"] = event_type
    rows = batch.read(conn, query, params)
    if not rows:
        return []
    return _take(conn, rows, worker=worker, lease_us=lease_us, now_us=now_us, forced=False, prefix=prefix)


def new_prefix() -> str:
    """A fresh token prefix for one batch of claims."""
    return uuid.uuid4().hex + "-"


def _take(
    conn: Connection, rows: Sequence[Any], *, worker: str, lease_us: int, now_us: int, forced: bool,
    prefix: str | None = None,
) -> list[Claim]:
    """Move the locked ``rows`` to IN_FLIGHT for ``worker``: one UPDATE, one INSERT, the counters (sent
    together, ``storage.batch``)."""
    prefix = prefix or new_prefix()
    expires_us = now_us + lease_us
    reason = "claimed" + (" (forced before next_retry_at)" if forced else "")
    transitions, updates = [], []
    for row in rows:
        moved = {"event_id": row.event_id, "at_us": now_us, "from_state": row.state,
                 "to_state": State.IN_FLIGHT, "actor": worker, "reason": reason, "attempt_number": None}
        head = chain.link(chain.head_of(row), "transition", moved)
        transitions.append(moved)
        updates.append({"b_id": row.event_id, "b_token": prefix + str(row.event_id), "b_worker": worker,
                        "b_now": now_us, "b_expires": expires_us, "b_forced": forced, "b_seq": head.seq,
                        "b_hash": head.hash})
    def check(changed: int) -> InvalidTransition | None:
        # The rows are locked (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so this means a bug or
        # a foreign writer; raising rolls the whole transaction back, so nothing is half-claimed.
        if changed == len(rows):
            return None
        return InvalidTransition(f"{len(rows) - changed} of {len(rows)} events changed while being claimed; "
                                 "nothing was claimed, try again")

    with batch.writes(conn) as out:
        out.execute(_TAKE, updates, check=check)
        out.execute(_INSERT_TRANSITIONS, transitions)
        delta: Counter[counters.Key] = Counter()
        for row in rows:
            # update(), not +=: Counter addition drops negative counts, losing the -1 of the state left.
            delta.update(counters.moved(row.event_type, row.state, State.IN_FLIGHT))
        counters.apply(conn, delta)
    claimed_at, lease_expires_at = from_us(now_us), from_us(expires_us)
    return [
        Claim(
            event=dataclasses.replace(
                event_from_row(row), state=State.IN_FLIGHT, claimed_by=worker, next_retry_at=None,
                lease_expires_at=lease_expires_at, updated_at=claimed_at,
            ),
            token=prefix + str(row.event_id), worker=worker, claimed_at=claimed_at,
            lease_expires_at=lease_expires_at, attempt_number=row.attempt_count + 1, forced=forced,
        )
        for row in rows
    ]


# Claims a batch with ``prefix`` took, still held: the rows ``_CLAIM_COLUMNS`` reads. IN_FLIGHT rows are few
# and ix_event_state_lease starts with the state, so this reads no more than them.
_ADOPT = _CLAIM_COLUMNS.where(
    event_state.c.state == State.IN_FLIGHT,
    event_state.c.claim_token.startswith(bindparam("b_prefix")),  # hex and "-": nothing to escape
).order_by(event_state.c.event_id)


def adopt(conn: Connection, prefix: str) -> list[Claim]:
    """The claims whose tokens start with ``prefix`` that still hold their events.

    After a transaction that claimed with ``prefix`` failed with the connection (``DatabaseUnavailable``),
    its commit may or may not have happened: these are the claims it took if it did, so the worker runs
    them instead of leaving them to expire into ``abandoned`` attempts no handler ever made.
    """
    claims_found = []
    for row in conn.execute(_ADOPT, {"b_prefix": prefix}):
        event = event_from_row(row)
        claimed_at, expires = from_us(row.claimed_at_us), from_us(row.lease_expires_at_us)
        claims_found.append(Claim(
            event=event, token=row.claim_token, worker=row.claimed_by, claimed_at=claimed_at,
            lease_expires_at=expires, attempt_number=row.attempt_count + 1, forced=bool(row.claim_forced),
        ))
    return claims_found


_RENEW = (
    update(event_state)
    .where(
        event_state.c.event_id.in_(bindparam("b_ids", expanding=True)),
        event_state.c.claim_token.in_(bindparam("b_tokens", expanding=True)),
        event_state.c.state == State.IN_FLIGHT,
    )
    .values(lease_expires_at_us=bindparam("b_expires"))
    .returning(event_state.c.claim_token)
)


def renew(conn: Connection, held: Sequence[Claim], *, lease_us: int, now_us: int) -> set[str]:
    """Extend the leases of claims still running to ``now + lease``; returns the tokens renewed.

    A lease is not history (no row is appended): it only says until when ``recover`` must leave the
    claim alone. A claim no longer held (recovered, finished elsewhere) is not renewed; its handler's
    outcome will meet ``StaleClaim``.
    """
    if not held:
        return set()
    params = {"b_ids": sorted({c.event.id for c in held}), "b_tokens": sorted({c.token for c in held}),
              "b_expires": now_us + lease_us}
    return {row[0] for row in conn.execute(_RENEW, params)}


@dataclass(frozen=True)
class ClaimOutcome:
    """The outcome of a claimed attempt, to record with ``Ledger.finish_many`` (``at``: when it was known,
    default the time of recording).

    ``permanent``, ``retry_after`` and ``detail`` as ``Ledger.report`` takes them (SPEC 4); ``traceback``
    and ``duration_seconds`` are what a runner knows of the handler's run (``run``, the worker).
    """

    claim: Claim
    ok: bool
    error_type: str | None = None
    error: str | None = None
    at: datetime | None = None
    permanent: bool = False
    retry_after: float | datetime | None = None
    detail: Mapping[str, Any] | None = None
    traceback: str | None = None
    duration_seconds: float | None = None


# Why one outcome of a group was not recorded: its claim was lost, or the outcome itself was refused.
Unrecorded = StaleClaim | NotFound | ValidationError | StorageError


@dataclass(frozen=True)
class Cycle:
    """What one worker step (``Ledger.cycle``) did: each outcome's result (in order), the new claims, and
    the tokens of the claims whose leases were renewed."""

    results: list[AttemptResult | Unrecorded]
    claims: list[Claim]
    renewed: set[str]

# What finishing reads of a claimed row, locked: the claim (token, holder, times) and what settling needs.
# The ids are one bound value (an array on PostgreSQL, a JSON list read by json_each on SQLite), so the
# statement is the same whatever their number and can be sent in a batch (``storage.batch``).
_es = event_state
_CLAIMED_ROWS = select(
    _es.c.event_id, _es.c.event_type, _es.c.state, _es.c.attempt_count, _es.c.budget_failures,
    _es.c.detected_at_us, _es.c.last_attempt_at_us, _es.c.claim_token, _es.c.claimed_by, _es.c.claimed_at_us,
    _es.c.claim_forced, _es.c.chain_seq, _es.c.chain_hash,
)
_LOCK_CLAIMED: dict[bool, Any] = {
    False: _CLAIMED_ROWS.where(_es.c.event_id.in_(
        select(text("value")).select_from(func.json_each(bindparam("b_ids"))).scalar_subquery()
    )).order_by(_es.c.event_id),
    True: _CLAIMED_ROWS.where(_es.c.event_id == any_(bindparam("b_ids"))).order_by(_es.c.event_id)
    .with_for_update(),
}


def finish_claims(
    conn: Connection, outcomes: Sequence[tuple[Claim, Reported]], *, policies: PolicySet, now_us: int,
    after_fault: bool = False,
) -> list[AttemptResult | Unrecorded]:
    """Record the outcomes of claimed attempts, all in the caller's transaction, with one statement per
    table whatever their number; returns, in order, each one's result or why it was not recorded.

    Each outcome is fenced by its claim's token: one whose claim no longer holds its event (recovered,
    claimed again, finished already) gets ``StaleClaim`` (``NotFound`` for an unknown event) and writes
    nothing, and the others are recorded all the same. The rows are locked in id order (``FOR UPDATE`` on
    PostgreSQL), so groups finishing concurrently cannot deadlock.

    ``after_fault``: these outcomes were sent before, in a transaction whose connection broke, perhaps
    during its commit. An outcome whose claim no longer holds the event because that commit did record
    it (its attempt is there, made by the claim's worker at the claim's time) gets that attempt's result
    instead of ``StaleClaim``: recorded once, and reported as recorded.
    """
    ids = sorted({claim.event.id for claim, _ in outcomes})
    postgres = conn.dialect.name == "postgresql"
    locked = batch.read(conn, _LOCK_CLAIMED[postgres], {"b_ids": ids if postgres else json.dumps(ids)})
    rows: dict[int, Any] = {row.event_id: row for row in locked}
    finished: dict[int, State] = {}  # events finished earlier in this group: a second outcome is stale
    results: list[AttemptResult | Unrecorded] = []
    settlements: list[recording.Settlement] = []
    for claim, reported in outcomes:
        event_id = claim.event.id
        row = rows.get(event_id)
        if row is None:
            results.append(NotFound(f"no event with id {event_id}"))
            continue
        stale = _stale(row, claim.token, finished.get(event_id))
        if stale is not None:
            earlier = recorded_before(conn, claim) if after_fault else None
            results.append(earlier or stale)
            continue
        settlement = _decide_finish(row, reported, policies=policies, now_us=now_us)
        finished[event_id] = settlement.result.state
        settlements.append(settlement)
        results.append(settlement.result)
    recording.write_settlements(conn, settlements)
    return results


def recorded_before(conn: Connection, claim: Claim) -> AttemptResult | None:
    """The result of ``claim``'s attempt if it is recorded already (see ``finish_claims``), else None."""
    found = conn.execute(
        select(attempt, transition.c.to_state, transition.c.reason)
        .join(transition, (transition.c.event_id == attempt.c.event_id)
              & (transition.c.attempt_number == attempt.c.number))
        .where(attempt.c.event_id == claim.event.id, attempt.c.number == claim.attempt_number,
               attempt.c.actor == claim.worker, attempt.c.started_at_us == to_us(claim.claimed_at))
    ).first()
    if found is None:
        return None
    next_retry = conn.execute(
        select(event_state.c.next_retry_at_us).where(event_state.c.event_id == claim.event.id,
                                                     event_state.c.attempt_count == claim.attempt_number)
    ).scalar()
    return AttemptResult(event_id=claim.event.id, attempt=attempt_from_row(found),
                         state=State(found.to_state), next_retry_at=opt_from_us(next_retry),
                         reason=found.reason)


def _stale(row: Row[Any], token: str, finished: State | None) -> StaleClaim | None:
    """``StaleClaim`` unless the claim with ``token`` still holds the event of ``row`` (``finished``: the
    state an earlier outcome of the same group left it in)."""
    if finished is not None:
        holder = f"now {finished}"
    elif row.state != State.IN_FLIGHT or row.claim_token != token:
        holder = f"claimed by {row.claimed_by}" if row.state == State.IN_FLIGHT else f"now {row.state}"
    else:
        return None
    return StaleClaim(
        f"event {row.event_id}: this claim no longer holds it ({holder}); its outcome was not recorded"
    )


def _decide_finish(
    row: Row[Any], reported: Reported, *, policies: PolicySet, now_us: int
) -> recording.Settlement:
    # Never before the claim, the detection or the previous attempt (an earlier `at`, a clock behind
    # another host's): the attempt keeps its place in time order.
    at_us = max(reported.at_us, row.claimed_at_us, recording.earliest_attempt_us(row))
    return recording.decide(
        row, dataclasses.replace(reported, at_us=at_us), step=Step.FINISH,
        policy=policies.for_type(row.event_type), actor=row.claimed_by, forced=bool(row.claim_forced),
        started_at_us=row.claimed_at_us, now_us=now_us,
    )


def expired_claims(
    conn: Connection, now_us: int, limit: int | None = None, *, lock: bool = True
) -> list[Row[Any]]:
    """IN_FLIGHT rows whose lease has expired, oldest first; locked (skipping rows others hold) unless
    ``lock`` is false, as a read-only transaction (a dry run) needs."""
    query = (
        select(event_state)
        .where(event_state.c.state == State.IN_FLIGHT, event_state.c.lease_expires_at_us < now_us)
        .order_by(event_state.c.lease_expires_at_us, event_state.c.event_id)
    )
    if limit is not None:
        query = query.limit(limit)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def recover_expired(conn: Connection, *, policies: PolicySet, actor: str, now_us: int) -> list[AttemptResult]:
    """``recover``: close every claim whose lease expired with an ``abandoned`` attempt (``LeaseExpired``),
    FAILED or DEAD by its type's policy, dated no earlier than anything the event already records."""
    results = []
    for row in expired_claims(conn, now_us):
        results.append(recording.settle(
            conn, row,
            Reported(ok=False, abandoned=True,
                     at_us=max(now_us, row.claimed_at_us, recording.earliest_attempt_us(row)),
                     error_type="LeaseExpired", error=abandoned_message(row)),
            step=Step.RECOVER, policy=policies.for_type(row.event_type), actor=actor,
            started_at_us=row.claimed_at_us, now_us=now_us,
        ))
    return results


def abandoned_message(row: Row[Any]) -> str:
    """The error text recorded for an attempt whose claim expired."""
    return (
        f"lease expired at {format_time(from_us(row.lease_expires_at_us))}: claimed by {row.claimed_by} "
        f"at {format_time(from_us(row.claimed_at_us))} and never finished"
    )


_TOKEN_PATTERN = re.compile(r"[0-9a-f]{32}-([1-9][0-9]{0,18})")


def event_id_of_token(token: object) -> int:
    """The event id a claim token names (tokens are a random prefix plus the id); ``ValidationError`` for
    anything that is not a claim token."""
    match = _TOKEN_PATTERN.fullmatch(token) if isinstance(token, str) else None
    if match is None or int(match.group(1)) > 2**63 - 1:
        raise ValidationError("not a claim token: use the token returned by a claim")
    return int(match.group(1))


def held_claim(conn: Connection, event_id: int, token: str) -> Claim:
    """The claim ``token`` holds on ``event_id`` (``StaleClaim`` if it holds nothing, ``NotFound`` if there
    is no such event); reads only."""
    row = conn.execute(_CLAIM_COLUMNS.add_columns(
        event_state.c.claim_token, event_state.c.claimed_at_us, event_state.c.claim_forced,
    ).where(event_state.c.event_id == event_id)).first()
    if row is None:
        raise NotFound(f"no event with id {event_id}")
    if row.state != State.IN_FLIGHT or row.claim_token != token:
        holder = f"claimed by {row.claimed_by}" if row.state == State.IN_FLIGHT else f"now {row.state}"
        raise StaleClaim(f"event {event_id}: this claim no longer holds it ({holder})")
    return Claim(
        event=event_from_row(row), token=token, worker=row.claimed_by, claimed_at=from_us(row.claimed_at_us),
        lease_expires_at=from_us(row.lease_expires_at_us), attempt_number=row.attempt_count + 1,
        forced=bool(row.claim_forced),
    )
