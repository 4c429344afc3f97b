"""Running work: claim (fenced, leased), finish, and recovery of claims whose lease expired.

A claim hands the runner a random token; finishing requires the token still to hold the event, so a
runner that lost its claim (recovered, or claimed again after recovery) cannot overwrite what happened
since (``StaleClaim``). Due work is claimed in batches: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so
many workers on many hosts take disjoint events; on SQLite inside one short ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from .. import states
from ..errors import StaleClaim
from ..models import Claim
from ..states import State, Step
from ..storage.tables import event_state, transition
from ..timeutil import format_time, from_us
from . import counters
from .recording import check_retry_time, load_event, lock_state

DEFAULT_LEASE_SECONDS = 300.0


def default_worker_id() -> str:
    """``host:pid``: names the runner in history and in stuck-claim diagnostics."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_one(
    conn: Connection, event_id: int, *, worker: str, lease_us: int, now_us: int, force: bool
) -> Claim:
    """Claim one event (PENDING, or FAILED when due or forced) for ``worker``."""
    row = lock_state(conn, event_id)
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
) -> list[Claim]:
    """Claim up to ``limit`` events that are due now, oldest due first, skipping rows others hold."""
    query = select(event_state).where(event_state.c.due_at_us <= now_us)
    if event_type is not None:
        query = query.where(event_state.c.event_type == event_type)
    query = query.order_by(event_state.c.due_at_us, event_state.c.event_id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(conn.execute(query))
    return _take(conn, rows, worker=worker, lease_us=lease_us, now_us=now_us, forced=False) if rows else []


def _take(
    conn: Connection, rows: list[Row[Any]], *, worker: str, lease_us: int, now_us: int, forced: bool
) -> list[Claim]:
    claims = []
    history = []
    delta: Counter[counters.Key] = Counter()
    for row in rows:
        token = uuid.uuid4().hex
        changed = conn.execute(
            update(event_state)
            .where(event_state.c.event_id == row.event_id, event_state.c.state == row.state)
            .values(
                state=State.IN_FLIGHT, claim_token=token, claimed_by=worker, claimed_at_us=now_us,
                lease_expires_at_us=now_us + lease_us, claim_forced=forced, due_at_us=None,
                updated_at_us=now_us,
            )
        ).rowcount
        if changed != 1:  # taken by someone else between our read and write (SQLite never gets here)
            continue
        history.append({
            "event_id": row.event_id, "at_us": now_us, "from_state": row.state, "to_state": State.IN_FLIGHT,
            "actor": worker, "reason": "claimed" + (" (forced before next_retry_at)" if forced else ""),
        })
        # update(), not +=: Counter addition drops the negative counts (the state left) on the floor.
        delta.update(counters.moved(row.event_type, row.state, State.IN_FLIGHT))
        claims.append(Claim(
            event=load_event(conn, row.event_id), token=token, worker=worker, claimed_at=from_us(now_us),
            lease_expires_at=from_us(now_us + lease_us), attempt_number=row.attempt_count + 1, forced=forced,
        ))
    if history:
        conn.execute(insert(transition), history)
        counters.apply(conn, delta)
    return claims


def lock_claimed(conn: Connection, event_id: int, token: str) -> Row[Any]:
    """The projection row of an event this token still holds; ``StaleClaim`` otherwise."""
    row = lock_state(conn, event_id)
    if row.state != State.IN_FLIGHT or row.claim_token != token:
        holder = f"claimed by {row.claimed_by}" if row.state == State.IN_FLIGHT else f"now {row.state}"
        raise StaleClaim(
            f"event {event_id}: this claim no longer holds it ({holder}); its outcome was not recorded"
        )
    return row


def expired_claims(conn: Connection, now_us: int, limit: int | None = None) -> list[Row[Any]]:
    """IN_FLIGHT rows whose lease has expired, oldest first."""
    query = (
        select(event_state)
        .where(event_state.c.state == State.IN_FLIGHT, event_state.c.lease_expires_at_us < now_us)
        .order_by(event_state.c.lease_expires_at_us, event_state.c.event_id)
    )
    if limit is not None:
        query = query.limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def abandoned_message(row: Row[Any]) -> str:
    """The error text recorded for an attempt whose claim expired."""
    return (
        f"lease expired at {format_time(from_us(row.lease_expires_at_us))}: claimed by {row.claimed_by} "
        f"at {format_time(from_us(row.claimed_at_us))} and never finished"
    )
