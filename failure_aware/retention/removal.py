"""Removing archived history: one chunk per transaction, recorded in ``archive`` in that transaction.

Each transaction opens the guard the append-only triggers check (``storage.triggers``), locks the chunk's
``event_state`` rows and removes only the events whose chain head is still the one written to the file
(an event revived or annotated since stays), then writes the ``archive`` record and closes the guard.
A chunk is small (``CHUNK_EVENTS``), so workers never wait long on what it locks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text

from failure_aware.events import counters
from failure_aware.retention.selection import FINISHED
from failure_aware.storage import chain
from failure_aware.storage.id_sets import among
from failure_aware.storage.tables import (
    annotation,
    archive,
    archive_guard,
    attempt,
    event_detected,
    event_state,
    transition,
)
from failure_aware.storage.triggers import GUARD_SETTING

CHUNK_EVENTS = 500


def head_key(chain_hash: str | None) -> int:
    """A 64-bit key of a chain head, kept per archived event between writing and removal (memory: 16
    bytes an event with its id). The hash covers the row's position, so a moved head changes it."""
    return int((chain_hash or "0" * 16)[:16], 16)


@dataclass(frozen=True)
class Record:
    """What every archive record of one run shares."""

    archive_id: str
    at_us: int
    actor: str
    horizon_us: int
    event_type: str | None
    file_name: str
    file_sha256: str


def open_guard(conn: Connection, archive_id: str) -> None:
    """Let this transaction's DELETEs of history through (first statement of the transaction)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config(:name, :value, true)"),
                     {"name": GUARD_SETTING, "value": archive_id})
    else:
        conn.execute(insert(archive_guard).values(archive_id=archive_id))


def close_guard(conn: Connection, archive_id: str) -> None:
    """Refuse DELETEs again (PostgreSQL: the setting ends with the transaction anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config(:name, '', true)"), {"name": GUARD_SETTING})
    else:
        conn.execute(delete(archive_guard).where(archive_guard.c.archive_id == archive_id))


def remove_events(conn: Connection, record: Record, chunk: int, ids: Sequence[int], keys: Sequence[int]
                  ) -> tuple[int, int]:
    """Remove the events of one chunk whose chain head is unchanged; returns (removed, kept changed)."""
    expected = dict(zip(ids, keys, strict=True))
    es = event_state.c
    query = select(es.event_id, es.event_type, es.state, es.chain_seq, es.chain_hash).where(
        among(conn, es.event_id, ids)).order_by(es.event_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = conn.execute(query).all()
    leaving = [r for r in rows if r.state in FINISHED and head_key(r.chain_hash) == expected[r.event_id]]
    if not leaving:
        return 0, len(ids)
    gone = [r.event_id for r in leaving]
    part = chain.Digest()
    for r in leaving:
        part.add(str(r.event_id), chain.head_of(r))
    at = attempt.c
    tried = conn.execute(select(at.event_type, at.outcome, func.count())
                         .where(among(conn, at.event_id, gone)).group_by(at.event_type, at.outcome)).all()
    open_guard(conn, record.archive_id)
    for table in (annotation, attempt, transition, event_state, event_detected):
        column = table.c.id if table is event_detected else table.c.event_id
        conn.execute(delete(table).where(among(conn, column, gone)))
    counters.apply(conn, _state_deltas(leaving))  # counts by state go down; attempt_total does not
    _insert_record(conn, record, chunk, events=len(leaving), rows=part.rows,
                   attempts=sorted([t, o, int(n)] for t, o, n in tried), note_heads={}, digest=part.part())
    close_guard(conn, record.archive_id)
    return len(leaving), len(ids) - len(leaving)


def _state_deltas(rows: Sequence[Any]) -> Counter[counters.Key]:
    delta: Counter[counters.Key] = Counter()
    for r in rows:
        delta[(r.event_type, r.state)] -= 1
    return delta


def remove_notes(conn: Connection, record: Record, chunk: int, notes: Sequence[Any]) -> int:
    """Remove archived cluster notes (starts of their types' chains, unchanged since: rows are immutable)
    and record where each type's chain now starts; returns how many left."""
    ids = [n.id for n in notes]
    present = set(conn.execute(select(annotation.c.id).where(annotation.c.id.in_(ids))).scalars())
    leaving = [n for n in notes if n.id in present]
    if not leaving:
        return 0
    heads: dict[str, list[Any]] = {}
    for n in leaving:  # in chain order per type: the last one is where the remaining chain starts
        heads[n.cluster_event_type] = [int(n.chain_seq), str(n.chain_hash)]
    open_guard(conn, record.archive_id)
    conn.execute(delete(annotation).where(annotation.c.id.in_([n.id for n in leaving])))
    _insert_record(conn, record, chunk, events=0, rows=0, attempts=[], note_heads=heads,
                   digest=chain.Digest().part())
    close_guard(conn, record.archive_id)
    return len(leaving)


def _insert_record(conn: Connection, record: Record, chunk: int, *, events: int, rows: int,
                   attempts: list[list[Any]], note_heads: dict[str, list[Any]], digest: str) -> None:
    conn.execute(insert(archive).values(
        archive_id=record.archive_id, chunk=chunk, at_us=record.at_us, actor=record.actor,
        horizon_us=record.horizon_us, event_type=record.event_type, file_name=record.file_name,
        file_sha256=record.file_sha256, events=events, rows=rows,
        attempts=json.dumps(attempts), note_heads=json.dumps(note_heads, sort_keys=True),
        digest=digest,
    ))
