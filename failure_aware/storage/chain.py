"""Tamper evidence: each event's history rows carry hashes chained within that event (SPEC section 14).

The rows of one event (its ``event_detected`` row, its attempts, transitions and notes) form a chain:
each has a position, ``chain_seq`` (0 for the event row, then 1, 2, ... in the order they were written),
and ``chain_hash = sha256(previous hash + "\\n" + canonical(row))``, where ``canonical`` is the JSON
list of the table's name and every stored column in table order except three: the surrogate ``id`` (a
row's address, assigned by the database after the hash is computed), ``event_id`` (the address of the
chain itself; a row moved to another event breaks both chains) and ``chain_hash``. Columns are taken from
the table definitions, so a column added later is covered without touching this module. The encoding is
a JSON object of the columns that are not NULL (a NULL is its name's absence: unambiguous), keys sorted, a
boolean as ``true``/``false`` whatever the backend returns: so a nullable column added by a later schema
version, NULL in the rows written before it, leaves their hashes valid. A writer passes every column it
sets explicitly, server defaults included.

Cluster notes (no event) are chained per event type the same way, starting from the type's name, with
their head in ``note_chain``; an event's head is kept in its ``event_state`` row. Either head is read
from a row the writer already locks (``event_state`` ``FOR UPDATE``, or the note chain row), so a chain
adds no lock that all writers share: writers of different events never wait on each other for it.

``verify`` recomputes every chain from the rows: a row changed, removed or inserted by someone who got past
the triggers breaks its chain (a hash that does not match, a gap or a repeat in the positions), old rows
included. Removing whole events, or rewriting a chain consistently, needs the digest kept elsewhere:
``digest`` folds every chain's head into one value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from failure_aware.storage.tables import (
    annotation,
    attempt,
    event_detected,
    event_state,
    note_chain,
    transition,
)

UNHASHED = frozenset({"id", "event_id", "chain_hash"})
GENESIS = ""  # the "previous hash" of an event's first row


@dataclass(frozen=True)
class Head:
    """The end of a chain: the last row's position and hash (``seq`` -1 and ``GENESIS``: empty)."""

    seq: int
    hash: str


EMPTY = Head(-1, GENESIS)


def _columns(table: Table) -> tuple[tuple[str, bool], ...]:
    return tuple((c.name, isinstance(c.type, Boolean)) for c in table.columns if c.name not in UNHASHED)


_HASHED: dict[str, tuple[tuple[str, bool], ...]] = {
    t.name: _columns(t) for t in (event_detected, attempt, transition, annotation)
}


def canonical(table_name: str, row: Mapping[str, Any]) -> str:
    """The text a row's hash covers: the table name and its hashed columns that are not NULL."""
    values = {}
    for name, boolean in _HASHED[table_name]:
        value = row.get(name)
        if value is None:
            continue
        values[name] = bool(value) if boolean else value  # SQLite gives booleans as 0/1
    return json.dumps([table_name, values], sort_keys=True, separators=(",", ":"))


def row_hash(previous: str, table_name: str, row: Mapping[str, Any]) -> str:
    """The hash of a row following ``previous`` in its chain."""
    return hashlib.sha256(f"{previous}\n{canonical(table_name, row)}".encode()).hexdigest()


def link(head: Head, table_name: str, row: dict[str, Any]) -> Head:
    """Append ``row`` (a dict of column values, about to be inserted) to the chain ending at ``head``: set
    its ``chain_seq`` and ``chain_hash``; returns the new head."""
    row["chain_seq"] = head.seq + 1
    row["chain_hash"] = row_hash(head.hash, table_name, row)
    return Head(row["chain_seq"], row["chain_hash"])


def head_of(row: Any) -> Head:
    """The head kept in an ``event_state`` (or ``note_chain``) row."""
    if row.chain_seq is None:
        return EMPTY
    return Head(int(row.chain_seq), str(row.chain_hash))


def note_genesis(event_type: str) -> str:
    """Where the chain of an event type's cluster notes starts."""
    return hashlib.sha256(f"cluster notes\n{event_type}".encode()).hexdigest()


def check(rows: Sequence[tuple[str, Any]], start: str = GENESIS) -> tuple[Head, str | None]:
    """Recompute one chain from its rows ((table name, row) pairs, in any order); returns the head it
    reaches and the first problem found (None when the chain is whole)."""
    ordered = sorted(rows, key=lambda r: (r[1].get("chain_seq") is None, r[1].get("chain_seq") or 0))
    head = Head(-1, start)
    for table_name, row in ordered:
        seq = row.get("chain_seq")
        where = f"{table_name} row {row.get('id')}"
        if seq is None or row.get("chain_hash") is None:
            return head, f"{where} has no chain hash"
        if seq != head.seq + 1:
            what = "appears twice" if seq <= head.seq else f"follows position {head.seq} (a row is missing)"
            return head, f"{where}: chain position {seq} {what}"
        if row_hash(head.hash, table_name, row) != row["chain_hash"]:
            return head, f"{where} (position {seq}) does not match its hash: changed after it was written"
        head = Head(seq, str(row["chain_hash"]))
    return head, None


def append_to_event(conn: Connection, event_id: int, head: Head) -> None:
    """Store ``head`` as the event's chain head (its ``event_state`` row, locked by the caller)."""
    conn.execute(update(event_state).where(event_state.c.event_id == event_id)
                 .values(chain_seq=head.seq, chain_hash=head.hash))


def link_note(conn: Connection, event_type: str, row: dict[str, Any]) -> None:
    """Chain a cluster note of ``event_type`` (set its ``chain_seq``/``chain_hash``) and move the type's
    head, locking the head row for the caller's transaction (created on the type's first note)."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(note_chain).values(event_type=event_type, chain_seq=None, chain_hash=None)
                 .on_conflict_do_nothing(index_elements=["event_type"]))
    query = select(note_chain).where(note_chain.c.event_type == event_type)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    found = conn.execute(query).one()
    head = head_of(found) if found.chain_seq is not None else Head(-1, note_genesis(event_type))
    head = link(head, "annotation", row)
    conn.execute(update(note_chain).where(note_chain.c.event_type == event_type)
                 .values(chain_seq=head.seq, chain_hash=head.hash))


class Digest:
    """One digest of all history: every chain's head, folded in a fixed order (events by id, then cluster
    note chains by event type)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(b"failure-aware history digest v1\n")
        self.chains = 0
        self.rows = 0

    def add(self, name: str, head: Head) -> None:
        """Fold in one chain, named by its event id or ``notes:TYPE``."""
        self._sha.update(f"{name}:{head.seq}:{head.hash}\n".encode())
        self.chains += 1
        self.rows += head.seq + 1

    def hexdigest(self) -> str:
        """The digest so far."""
        return self._sha.hexdigest()


__all__ = ["EMPTY", "Digest", "Head", "canonical", "check", "head_of", "link", "note_genesis", "row_hash"]
