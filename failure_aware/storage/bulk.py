"""Bulk writing for imports: event ids handed out in advance and rows inserted many at a time.

The only module besides ``engine`` that speaks to the drivers directly, because the fastest paths are
driver features: ``COPY ... FROM STDIN`` through psycopg on PostgreSQL, ``executemany`` of one prepared
statement through sqlite3 on SQLite. Both run on the caller's connection, inside its transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select, text

from .tables import event_detected

_SQLITE_BATCH = 5000  # keys per statement: well under SQLite's 32,766 parameters


def allocate_event_ids(conn: Connection, count: int) -> list[int]:
    """``count`` unused ``event_detected`` ids, ascending, for rows this transaction will insert.

    SQLite: ``max(id) + 1 ...``, safe because a write transaction holds the database's write lock
    (``BEGIN IMMEDIATE``) until it commits. PostgreSQL: drawn from the column's sequence, so concurrent
    writers never get the same ids.
    """
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('event_detected', 'id')) FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return sorted(int(r[0]) for r in rows)
    start = int(conn.execute(select(func.coalesce(func.max(event_detected.c.id), 0))).scalar_one()) + 1
    return list(range(start, start + count))


def existing_keys(conn: Connection, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The ``(event_type, key)`` pairs among ``pairs`` that already have an event.

    Each lookup uses the unique index on ``(event_type, key)``: PostgreSQL joins two arrays unnested (one
    statement, two parameters); SQLite asks ``key IN (...)`` once per event type and batch.
    """
    if not pairs:
        return set()
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT e.event_type, e.key FROM event_detected e "
                "JOIN unnest(CAST(:types AS text[]), CAST(:keys AS text[])) AS wanted(event_type, key) "
                "ON e.event_type = wanted.event_type AND e.key = wanted.key"
            ),
            {"types": [t for t, _ in pairs], "keys": [k for _, k in pairs]},
        )
        return {(r[0], r[1]) for r in rows}
    by_type: dict[str, list[str]] = defaultdict(list)
    for event_type, key in pairs:
        by_type[event_type].append(key)
    found: set[tuple[str, str]] = set()
    for event_type, keys in by_type.items():
        for start in range(0, len(keys), _SQLITE_BATCH):
            batch = keys[start : start + _SQLITE_BATCH]
            marks = ", ".join("?" * len(batch))
            rows = conn.exec_driver_sql(
                f"SELECT key FROM event_detected WHERE event_type = ? AND key IN ({marks})",
                (event_type, *batch),
            )
            found.update((event_type, r[0]) for r in rows)
    return found


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table``, in the caller's transaction."""
    if not rows:
        return
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    table_name = quote(table.name)
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.dbapi_connection  # psycopg's Connection: COPY is a driver feature
        with raw.cursor() as cursor, cursor.copy(f"COPY {table_name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table_name} ({names}) VALUES ({marks})", list(rows))
