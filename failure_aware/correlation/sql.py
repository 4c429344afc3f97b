"""Plain SQL on the DB-API connection under a SQLAlchemy ``Connection``, inside its transaction.

Correlation's hot paths run thousands of tiny statements (incremental) or stream millions of rows
(rebuild); SQLAlchemy's per-statement compilation and per-row objects cost more than the database work
there (profiled: 3x on a rebuild, 10x on an incremental run). So these few statements are written once,
with ``?`` placeholders (turned into ``%s`` for psycopg), and run on the driver's cursor. The drivers cache
the prepared statements (sqlite3's statement cache, psycopg's automatic prepare). Driver errors become
``StorageError`` like everywhere else; nothing here imports a driver.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection

from failure_aware.domain.errors import StorageError

STREAM_CHUNK = 10_000
LIBPQ_CHUNKED_ROWS = 170000  # libpq's version number from which a result can arrive in chunks
_cursor_names = itertools.count()


class Sql:
    """The DB-API side of one SQLAlchemy connection (same transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._raw: Any = conn.connection.dbapi_connection
        self._error: type[Exception] = conn.dialect.loaded_dbapi.Error
        self._cursor: Any = None
        self.horizon_us: int | None = None  # the retention horizon, once read (``failures.horizon``)

    def _native(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextmanager
    def _wrapped(self) -> Iterator[None]:
        try:
            yield
        except self._error as exc:
            raise _storage_error(exc) from exc

    @property
    def cursor(self) -> Any:
        """A reusable client-side cursor."""
        if self._cursor is None:
            self._cursor = self._raw.cursor()
        return self._cursor

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a (small) query."""
        try:  # no context manager here: this runs once per cluster in a rebuild
            cursor = self.cursor
            cursor.execute(sql.replace("?", "%s") if self.postgres else sql, params)
            return list(cursor.fetchall())
        except self._error as exc:
            raise _storage_error(exc) from exc

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement; returns its row count."""
        with self._wrapped():
            self.cursor.execute(self._native(sql), tuple(params))
            return int(self.cursor.rowcount)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute a statement once per row of parameters."""
        if rows:
            with self._wrapped():
                self.cursor.executemany(self._native(sql), [tuple(r) for r in rows])

    def stream(
        self, sql: str, params: Sequence[Any] = (), *, chunk: int = STREAM_CHUNK, exclusive: bool = False
    ) -> Iterator[list[Any]]:
        """The rows of a large query in chunks, in constant memory.

        PostgreSQL: a server-side cursor, fetched a chunk per round trip. With ``exclusive`` (the caller
        runs no other statement on this connection until the stream is done) and libpq 17 or later, one
        query whose rows the server sends in chunks without waiting to be asked, so it keeps producing
        while this side works on the last chunk (measured 10-25 % off a 1M rebuild). Results are binary
        either way: integers arrive without text parsing (~8 % more). SQLite steps through the result as
        rows are fetched.
        """
        with self._wrapped():
            if self.postgres and exclusive and self._chunked_rows():
                yield from self._chunked(sql, params, chunk)
                return
            if self.postgres:
                cursor = self._raw.cursor(name=f"fa_correlation_{next(_cursor_names)}", binary=True)
                cursor.itersize = chunk
            else:
                cursor = self._raw.cursor()
            try:
                cursor.execute(self._native(sql), tuple(params))
                while batch := cursor.fetchmany(chunk):
                    yield batch
            finally:
                cursor.close()

    def _chunked_rows(self) -> bool:
        """Whether libpq can deliver a result in chunks (version 17 or later)."""
        pq = getattr(self.conn.dialect.loaded_dbapi, "pq", None)
        return pq is not None and pq.version() >= LIBPQ_CHUNKED_ROWS

    def _chunked(self, sql: str, params: Sequence[Any], chunk: int) -> Iterator[list[Any]]:
        cursor = self._raw.cursor(binary=True)
        rows = cursor.stream(self._native(sql), tuple(params), size=chunk)
        try:
            while batch := list(itertools.islice(rows, chunk)):
                yield batch
        finally:
            rows.close()  # an abandoned stream must be drained before the connection is used again
            cursor.close()

    def close(self) -> None:
        """Close the reusable cursor (the connection stays the caller's)."""
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def bounded(
    query: str, params: list[Any], column: str, lo: int | None, hi: int | None
) -> tuple[str, list[Any]]:
    """``query`` narrowed to ``lo <= column <= hi`` (a None bound leaves that side open)."""
    if lo is not None:
        query, params = f"{query} AND {column} >= ?", [*params, lo]
    if hi is not None:
        query, params = f"{query} AND {column} <= ?", [*params, hi]
    return query, params


def batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, count)`` slices of ``total`` items for SQLite compound statements (one arm or two per
    item): ``size`` items each (a power of two), the rest in smaller powers of two (8 + 4 + 1 for 13).

    So such a statement has one of a handful of texts, each compiled once per connection (sqlite3's
    statement cache) however the item counts vary from one call to the next. SQLite compiles a compound
    statement in about 40 microseconds an arm, which is more than running it; an item runs as fast in a
    statement of 16 items as in one of 200 (measured at 1M failures: 21-23 microseconds to read a page of
    20 failures with 1 to 64 per statement). Statements of hundreds of arms, each count compiled anew,
    were a third of an incremental run of 1,000 scattered late failures.
    """
    offset = 0
    while offset < total:
        count = min(size, 1 << ((total - offset).bit_length() - 1))
        yield offset, count
        offset += count


def _storage_error(exc: Exception) -> StorageError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(f"correlation: {first}")
