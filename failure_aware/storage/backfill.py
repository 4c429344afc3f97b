"""Schema v5's backfill: hash the history written before hash chains existed (see ``core.chain``).

Each event's rows get positions in a fixed order: its event row first, then its attempts, transitions and
notes by time (at the same time: attempt, then transition, then note; then by id), which is the order
they were written in. Cluster notes are chained per event type by time and id. Events are read in
id-ordered chunks, so memory stays bounded on large databases. The caller has dropped the UPDATE
triggers for the duration of its transaction (``migrations._v5_hash_chains``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from failure_aware.storage import chain
from failure_aware.storage.tables import (
    annotation,
    attempt,
    event_detected,
    event_state,
    note_chain,
    transition,
)

CHUNK = 2000
_RANK = {"attempt": 0, "transition": 1, "annotation": 2}


def hash_existing_history(conn: Connection) -> None:
    """Fill ``chain_seq``/``chain_hash`` of every history row and the heads in ``event_state`` and
    ``note_chain``."""
    after = 0
    while True:
        ed = event_detected.c
        events = [dict(r._mapping) for r in conn.execute(
            select(event_detected).where(ed.id > after).order_by(ed.id).limit(CHUNK)
        )]
        if not events:
            break
        upto = events[-1]["id"]
        rows: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for table in (attempt, transition, annotation):
            query = select(table).where(table.c.event_id > after, table.c.event_id <= upto)
            for r in conn.execute(query):
                rows[r.event_id].append((table.name, dict(r._mapping)))
        updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        heads = []
        for event in events:
            head = chain.link(chain.EMPTY, "event_detected", event)
            updates["event_detected"].append(event)
            ordered = sorted(rows.pop(event["id"], []), key=_written_order)
            for table_name, row in ordered:
                head = chain.link(head, table_name, row)
                updates[table_name].append(row)
            heads.append({"b_id": event["id"], "b_seq": head.seq, "b_hash": head.hash})
        _write(conn, updates)
        conn.execute(update(event_state).where(event_state.c.event_id == bindparam("b_id"))
                     .values(chain_seq=bindparam("b_seq"), chain_hash=bindparam("b_hash")), heads)
        after = upto
    _hash_cluster_notes(conn)


def _written_order(item: tuple[str, dict[str, Any]]) -> tuple[int, int, int]:
    table_name, row = item
    return row["at_us"], _RANK[table_name], row["id"]


def _hash_cluster_notes(conn: Connection) -> None:
    notes = conn.execute(
        select(annotation).where(annotation.c.event_id.is_(None))
        .order_by(annotation.c.cluster_event_type, annotation.c.at_us, annotation.c.id)
    )
    heads: dict[str, chain.Head] = {}
    updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in notes:
        row = dict(r._mapping)
        event_type = row["cluster_event_type"]
        start = heads.get(event_type, chain.Head(-1, chain.note_genesis(event_type)))
        heads[event_type] = chain.link(start, "annotation", row)
        updates["annotation"].append(row)
    _write(conn, updates)
    if heads:
        conn.execute(note_chain.insert(), [{"event_type": t, "chain_seq": h.seq, "chain_hash": h.hash}
                                           for t, h in heads.items()])


_TABLES = {t.name: t for t in (event_detected, attempt, transition, annotation)}


def _write(conn: Connection, updates: dict[str, list[dict[str, Any]]]) -> None:
    for table_name, rows in updates.items():
        if rows:
            table = _TABLES[table_name]
            conn.execute(
                update(table).where(table.c.id == bindparam("b_id"))
                .values(chain_seq=bindparam("b_seq"), chain_hash=bindparam("b_hash")),
                [{"b_id": r["id"], "b_seq": r["chain_seq"], "b_hash": r["chain_hash"]} for r in rows],
            )
