"""Exporting events as interchange records (SPEC section 8), streamed in id order.

Cluster notes follow the events, one line each (``{"kind": "cluster_note", ...}``), so a round trip
keeps every annotation. Events are read a page at a time, with one query per page for each of their
attempts, transitions and annotations, so memory stays constant however large the database. Besides the
fields of SPEC section 8 every record carries ``state``, ``next_retry_at`` and ``transitions``: what an
import needs to reproduce states that attempts alone cannot give (see docs/interchange.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import IO, Any

from sqlalchemy import Connection, Row, select

from failure_aware.domain.progress import Progress
from failure_aware.domain.timeutil import from_us
from failure_aware.storage.id_sets import among
from failure_aware.storage.tables import annotation, attempt, event_detected, event_state, transition

PAGE_EVENTS = 1000
CLUSTER_NOTE = "cluster_note"  # the ``kind`` of a cluster note's line


def export(
    conn: Connection, *, event_type: str | None = None, page: int = PAGE_EVENTS
) -> Iterator[dict[str, Any]]:
    """One record per event, in id order, optionally only those of ``event_type``."""
    ed, es = event_detected, event_state
    after = 0
    while True:
        query = (
            select(
                ed.c.id,
                ed.c.event_type,
                ed.c.key,
                ed.c.payload,
                ed.c.detected_at_us,
                es.c.state,
                es.c.next_retry_at_us,
            )
            .join(es, es.c.event_id == ed.c.id)
            .where(ed.c.id > after)
            .order_by(ed.c.id)
            .limit(page)
        )
        if event_type is not None:
            query = query.where(ed.c.event_type == event_type)
        events = list(conn.execute(query))
        if not events:
            return
        yield from records_of(conn, events)
        after = events[-1].id


def records_of(conn: Connection, events: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The records of ``events`` (rows with the event's columns, ``state`` and ``next_retry_at_us``), in
    their order: one query each for their attempts, transitions and annotations."""
    ids = [e.id for e in events]
    attempts = _grouped(
        conn.execute(
            select(attempt)
            .where(among(conn, attempt.c.event_id, ids))
            .order_by(attempt.c.event_id, attempt.c.number)
        )
    )
    history = _grouped(
        conn.execute(
            select(transition)
            .where(among(conn, transition.c.event_id, ids))
            .order_by(transition.c.event_id, transition.c.id)
        )
    )
    notes = _grouped(
        conn.execute(
            select(annotation)
            .where(among(conn, annotation.c.event_id, ids))
            .order_by(annotation.c.event_id, annotation.c.id)
        )
    )
    for e in events:
        yield {
            "event_type": e.event_type,
            "key": e.key,
            "detected_at": _time(e.detected_at_us),
            "payload": json.loads(e.payload),
            "attempts": [_attempt(a) for a in attempts.get(e.id, ())],
            "annotations": [
                {"at": _time(n.at_us), "author": n.author, "text": n.text} for n in notes.get(e.id, ())
            ],
            "state": e.state,
            "next_retry_at": None if e.next_retry_at_us is None else _time(e.next_retry_at_us),
            "transitions": [_transition(t) for t in history.get(e.id, ())],
        }


def export_cluster_notes(conn: Connection, *, event_type: str | None = None) -> Iterator[dict[str, Any]]:
    """The cluster notes (SPEC 8): one ``{"kind": "cluster_note", ...}`` record each, in id order."""
    a = annotation.c
    query = (select(a.cluster_event_type, a.span_start_us, a.span_end_us, a.at_us, a.author, a.text)
             .where(a.event_id.is_(None)).order_by(a.id))
    if event_type is not None:
        query = query.where(a.cluster_event_type == event_type)
    for note in conn.execute(query):
        yield cluster_note_record(note)


def cluster_note_record(note: Any) -> dict[str, Any]:
    """The record of one cluster note (a row with ``cluster_event_type``, the span, ``at``, author, text)."""
    return {
        "kind": CLUSTER_NOTE, "event_type": note.cluster_event_type,
        "window_start": _time(note.span_start_us), "window_end": _time(note.span_end_us),
        "at": _time(note.at_us), "author": note.author, "text": note.text,
    }


def event_total(conn: Connection, event_type: str | None = None) -> int:
    """How many events an export will write, from the ``state_count`` counters (no scan of history)."""
    from failure_aware.events import counters

    return sum(n for (kind, _state), n in counters.stored(conn).items()
               if event_type is None or kind == event_type)


def counted(
    records: Iterator[dict[str, Any]], on_progress: Progress, total: int
) -> Iterator[dict[str, Any]]:
    """``records`` as they are, telling ``on_progress("export", done, total)`` after every page of events
    and at the end."""
    done = 0
    for record in records:
        yield record
        done += 1
        if done % PAGE_EVENTS == 0:
            on_progress("export", done, total)
    on_progress("export", done, max(total, done))


def write_lines(records: Iterator[dict[str, Any]], target: IO[str]) -> int:
    """Write records as JSON Lines (UTF-8 text, one object per line); returns how many."""
    count = 0
    for record in records:
        target.write(json.dumps(record, ensure_ascii=False))
        target.write("\n")
        count += 1
    return count


def _attempt(row: Row[Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"at": _time(row.at_us), "outcome": row.outcome}
    if row.started_at_us is not None:
        item["started_at"] = _time(row.started_at_us)
    if row.error_type is not None:
        item["error_type"] = row.error_type
    if row.error is not None:
        item["error"] = row.error
    if row.forced:
        item["forced"] = True
    item["actor"] = row.actor
    if row.traceback is not None:
        item["traceback"] = row.traceback
    if row.duration_us is not None:
        item["duration_seconds"] = row.duration_us / 1_000_000
    if row.detail is not None:
        item["detail"] = json.loads(row.detail)
    return item


def _transition(row: Row[Any]) -> dict[str, Any]:
    return {
        "at": _time(row.at_us),
        "from_state": row.from_state,
        "to_state": row.to_state,
        "actor": row.actor,
        "reason": row.reason,
        "attempt_number": row.attempt_number,
    }


def _grouped(rows: Any) -> dict[int, list[Row[Any]]]:
    groups: dict[int, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        groups[row.event_id].append(row)
    return groups


def time_text(micros: int) -> str:
    """A stored time as RFC 3339 text."""
    return _time(micros)


def _time(micros: int) -> str:
    # An export writes two or three times per event, mostly of few distinct seconds: the date and clock
    # of a second are formatted once (cached) and the microseconds appended, as ``format_time`` would
    # write them (equal for every time: tests/unit/test_interchange_time.py).
    seconds, fraction = divmod(micros, 1_000_000)
    whole = _second_text(seconds)
    return f"{whole}.{fraction:06d}Z" if fraction else f"{whole}Z"


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole second since the epoch (UTC, no suffix)."""
    return from_us(seconds * 1_000_000).replace(tzinfo=None).isoformat()
