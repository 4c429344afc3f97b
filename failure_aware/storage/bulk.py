"""Bulk writing for imports: event ids handed out in advance and rows inserted many at a time.

The only module besides ``engine`` that speaks to the drivers directly, because the fastest paths are
driver features: ``COPY ... FROM STDIN`` through psycopg on PostgreSQL, ``executemany`` of one prepared
statement through sqlite3 on SQLite. Both run on the caller's connection, inside its transaction, and both
take rows from any iterable (a generator spanning many chunks feeds one PostgreSQL ``COPY``, so the server
inserts while the caller computes the next rows). A driver error is raised as SQLAlchemy's ``DBAPIError``,
as for any other statement (the store turns it into a ``StorageError``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, func, select, text
from sqlalchemy.exc import DBAPIError

from failure_aware.storage.tables import event_detected

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
        ids = conn.execute(  # one row holding an array: cheaper to fetch than ``count`` rows
            text(
                "SELECT array_agg(nextval(pg_get_serial_sequence('event_detected', 'id'))) "
                "FROM generate_series(1, :n)"
            ),
            {"n": count},
        ).scalar_one()
        return sorted(ids)
    start = int(conn.execute(select(func.coalesce(func.max(event_detected.c.id), 0))).scalar_one()) + 1
    return list(range(start, start + count))


def alone_in_empty_database(conn: Connection) -> bool:
    """True when no event exists and none but the caller's can appear before it commits, so the keys it
    inserts (distinct among themselves) cannot exist: SQLite, where the write transaction holds the
    database's write lock, on an empty ``event_detected``. Never on PostgreSQL (other writers go on)."""
    if conn.dialect.name == "postgresql":
        return False
    return conn.execute(select(event_detected.c.id).limit(1)).first() is None


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


def staging(table: Table, name: str) -> Table:
    """A stand-in for a temporary copy of ``table`` named ``name``, for ``insert_rows`` (which needs only
    the name: the columns are given)."""
    return Table(name, MetaData(), *(Column(c.name, c.type) for c in table.columns))


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table``, in the caller's transaction.

    ``rows`` may be a generator; it is consumed once, as the rows are sent (one ``COPY`` or one
    ``executemany``).
    """
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    table_name = quote(table.name)
    raw: Any = conn.connection.dbapi_connection  # COPY and executemany of an iterator: driver features
    if conn.dialect.name == "postgresql":
        statement = f"COPY {table_name} ({names}) FROM STDIN"
        try:
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError(statement, None, exc) from exc
        return
    marks = ", ".join("?" * len(columns))
    statement = f"INSERT INTO {table_name} ({names}) VALUES ({marks})"
    cursor = raw.cursor()
    try:
        cursor.executemany(statement, rows)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError(statement, None, exc) from exc
    finally:
        cursor.close()
