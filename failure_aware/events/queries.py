"""Reading: event lists and the full story of one event. Nothing here writes."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, select, text

from failure_aware.domain.records import Event, EventDetail
from failure_aware.domain.states import State
from failure_aware.events import counters
from failure_aware.events.recording import load_event
from failure_aware.events.rows import (
    annotation_from_row,
    attempt_from_row,
    event_from_row,
    event_select,
    transition_from_row,
)
from failure_aware.storage.tables import (
    FAILURE_SQL,
    annotation,
    attempt,
    event_detected,
    event_state,
    transition,
)


def list_events(
    conn: Connection,
    *,
    state: State | None = None,
    event_type: str | None = None,
    since_us: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
    until_us: int | None = None,
    fingerprint: str | None = None,
    failed_within: tuple[str, int, int] | None = None,
) -> list[Event]:
    """Events newest first (by id), filtered; page with ``before_id`` = the last id of the previous page.

    ``fingerprint``: events with a failure of that fingerprint. ``failed_within`` ``(type, start_us,
    end_us)``: events with a failure of that type in that span (a cluster's members), a range on
    ``ix_attempt_failures``.
    """
    query = event_select()
    walk = _walk_ids(conn, state, event_type)
    if state is not None:
        query = query.where((event_state.c.state + "" if walk else event_state.c.state) == state)
    if event_type is not None:  # the projection's copy of the type: (type, state, ...) indexes hold it
        query = query.where((event_state.c.event_type + "" if walk else event_state.c.event_type)
                            == event_type)
    if since_us is not None:
        query = query.where(event_detected.c.detected_at_us >= since_us)
    if until_us is not None:
        query = query.where(event_detected.c.detected_at_us <= until_us)
    a = attempt.c
    if fingerprint is not None:
        query = query.where(event_detected.c.id.in_(
            select(a.event_id).where(text("attempt." + FAILURE_SQL), a.fingerprint == fingerprint)
        ))
    if failed_within is not None:
        kind, start_us, end_us = failed_within
        query = query.where(event_detected.c.id.in_(
            select(a.event_id).where(text("attempt." + FAILURE_SQL), a.event_type == kind,
                                     a.at_us >= start_us, a.at_us <= end_us)
        ))
    if before_id is not None:
        query = query.where(event_detected.c.id < before_id)
    query = query.order_by(event_detected.c.id.desc()).limit(limit)
    return [event_from_row(row) for row in conn.execute(query)]


DENSE_SHARE = 50  # a filter matching at least 1 event in 50 walks the ids (at most ~50 rows per row shown)


def _walk_ids(conn: Connection, state: State | None, event_type: str | None) -> bool:
    """Whether SQLite should walk the primary key backwards, testing state and type row by row.

    SQLite without statistics (no ANALYZE) takes the state or type index, then sorts every match by id:
    half a second for the 50,000 DEAD events of a 1M database. When the counters say the filter matches
    one event in ``DENSE_SHARE`` or more, walking ids newest first finds a page after ~50 rows per row
    (``x || ''`` keeps SQLite off the index); a rarer filter keeps the index (few matches to sort).
    PostgreSQL's planner has statistics and chooses well by itself.
    """
    if conn.dialect.name != "sqlite" or (state is None and event_type is None):
        return False
    stored = counters.stored(conn)
    total = sum(stored.values())
    matching = sum(n for (kind, st), n in stored.items()
                   if (state is None or st == state) and (event_type is None or kind == event_type))
    return matching * DENSE_SHARE >= total


def iter_events(conn: Connection, *, batch: int = 1000) -> Iterator[Event]:
    """Every event in id order, read in pages (constant memory)."""
    after = 0
    while True:
        page = event_select().where(event_detected.c.id > after).order_by(event_detected.c.id).limit(batch)
        rows = list(conn.execute(page))
        if not rows:
            return
        for row in rows:
            yield event_from_row(row)
        after = rows[-1].id


def event_detail(conn: Connection, event_id: int) -> EventDetail:
    """The event, its attempts, transitions and annotations (``NotFound`` if unknown)."""
    event = load_event(conn, event_id)
    attempts = conn.execute(select(attempt).where(attempt.c.event_id == event_id).order_by(attempt.c.number))
    history = conn.execute(
        select(transition).where(transition.c.event_id == event_id).order_by(transition.c.id)
    )
    notes = conn.execute(
        select(annotation).where(annotation.c.event_id == event_id).order_by(annotation.c.id)
    )
    return EventDetail(
        event=event,
        attempts=tuple(attempt_from_row(r) for r in attempts),
        transitions=tuple(transition_from_row(r) for r in history),
        annotations=tuple(annotation_from_row(r) for r in notes),
    )


def due_events(conn: Connection, *, now_us: int, event_type: str | None, limit: int) -> list[Event]:
    """Events due at ``now_us`` (PENDING, or FAILED past ``next_retry_at``), oldest due first, unclaimed."""
    ids = conn.execute(
        select(event_state.c.event_id)
        .where(event_state.c.due_at_us <= now_us,
               *([event_state.c.event_type == event_type] if event_type else []))
        .order_by(event_state.c.due_at_us, event_state.c.event_id)
        .limit(limit)
    ).scalars().all()
    return [load_event(conn, i) for i in ids]
