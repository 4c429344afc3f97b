"""Operator actions: give up on an event (bury), bring dead ones back (revive), add notes (annotate).

Every one is recorded with its actor and reason; none rewrites history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, text

from failure_aware.domain.records import Annotation
from failure_aware.domain.states import State, Step
from failure_aware.domain.timeutil import from_us
from failure_aware.events.recording import change_state, lock_state
from failure_aware.storage import chain
from failure_aware.storage.tables import FAILURE_SQL, annotation, attempt, event_state, transition


def bury(conn: Connection, event_id: int, *, actor: str, reason: str, now_us: int) -> None:
    """FAILED -> DEAD: stop retrying an event."""
    row = lock_state(conn, event_id)
    change_state(
        conn, row, step=Step.BURY, target=State.DEAD, actor=actor, reason=f"buried: {reason}", now_us=now_us,
        values={"next_retry_at_us": None, "due_at_us": None},
    )


def revive(conn: Connection, event_id: int, *, actor: str, reason: str, now_us: int) -> None:
    """DEAD -> PENDING: attempt numbers continue; the retry budget and backoff restart (SPEC 3)."""
    row = lock_state(conn, event_id)
    change_state(
        conn, row, step=Step.REVIVE, target=State.PENDING, actor=actor, reason=f"revived: {reason}",
        now_us=now_us, values={"budget_failures": 0, "next_retry_at_us": None, "due_at_us": now_us},
    )


def dead_since(
    conn: Connection, *, event_type: str | None, since_us: int, limit: int | None, lock: bool = False,
    fingerprint: str | None = None,
) -> list[int]:
    """Ids of events now DEAD whose move to DEAD happened at or after ``since_us``, in id order.

    With ``lock`` (a bulk revive), their projection rows are locked for the caller's transaction, skipping
    rows another transaction holds (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite's write transaction
    holds the whole database): two bulk revives at once revive disjoint sets, each event once, instead of
    the second failing on events the first revived. ``fingerprint``: only events with a failure of that
    fingerprint (the dashboard's dead-letter groups).
    """
    died = (
        select(transition.c.event_id)
        .where(transition.c.to_state == State.DEAD, transition.c.at_us >= since_us)
        .distinct()
        .subquery()
    )
    es = event_state.c
    query = select(es.event_id).where(es.state == State.DEAD).order_by(es.event_id)
    if since_us > 0:  # every DEAD event died after 1970: "all of them" reads no history
        query = query.where(event_state.c.event_id.in_(select(died.c.event_id)))
    if event_type is not None:
        query = query.where(event_state.c.event_type == event_type)
    if fingerprint is not None:
        a = attempt.c
        query = query.where(event_state.c.event_id.in_(
            select(a.event_id).where(text("attempt." + FAILURE_SQL), a.fingerprint == fingerprint)
        ))
    if limit is not None:
        query = query.limit(limit)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=event_state)
    return list(conn.execute(query).scalars())


def revive_dead(
    conn: Connection, *, event_type: str | None, since_us: int, limit: int | None, actor: str, reason: str,
    now_us: int, fingerprint: str | None = None,
) -> list[int]:
    """Revive every event that died at or after ``since_us``, locking each as it is found (skipping those
    another bulk revive holds, so two at once revive disjoint sets). Returns the ids revived."""
    ids = dead_since(conn, event_type=event_type, since_us=since_us, limit=limit, lock=True,
                     fingerprint=fingerprint)
    for event_id in ids:
        revive(conn, event_id, actor=actor, reason=reason, now_us=now_us)
    return ids


def annotate_event(conn: Connection, event_id: int, text: str, *, author: str, now_us: int) -> Annotation:
    """Add a note to an event (``NotFound`` if there is no such event)."""
    row = lock_state(conn, event_id)  # NotFound for an unknown event; holds the event's chain head
    note: dict[str, Any] = {"event_id": event_id, "author": author, "at_us": now_us, "text": text}
    chain.append_to_event(conn, event_id, chain.link(chain.head_of(row), "annotation", note))
    new_id = conn.execute(insert(annotation).values(**note).returning(annotation.c.id)).scalar_one()
    return Annotation(id=new_id, author=author, at=from_us(now_us), text=text, event_id=event_id)
