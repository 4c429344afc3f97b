"""Writes of one transaction sent together: on PostgreSQL in one psycopg pipeline (one round trip for all of
them), on SQLite one after another on the driver's cursor; either way without SQLAlchemy's per-execution
work.

Why: a worker's step (``Ledger.cycle``) records a group of outcomes and claims as many events: a dozen
statements, during which its handler slots have nothing to do, since they get work only from the step's
claims (claims are taken only for free slots, SPEC 14). Sent one by one through SQLAlchemy, that was eleven
round trips to PostgreSQL and, on both backends, more client CPU than the database work (issue 14's
benchmark, docs/benchmarks.md section 7). Inside ``batched(conn)`` the writers queue their statements here
(``execute``; they find the batch with ``current``) and they are sent together, with the next read that
must see them (``query``, ``read``) or at the block's end, before the commit: a step is five round trips.
Reads made on ``conn`` directly meanwhile do not see the queued writes. A write may carry a check of its
row count (a guarded UPDATE): checks run once the writes are sent, and the error one raises rolls the
whole transaction back, as it did when each was checked on its own.

Statements are the callers' Core statements, compiled once per dialect and set of parameter names, with no
type processing: every value written here is a plain ``int``, ``str``, ``bool`` or None. Driver errors are
raised as SQLAlchemy's ``DBAPIError`` (the connection invalidated first when it broke), so the store
classifies them as it does every other error (``DatabaseUnavailable`` for a lost server).
"""

from __future__ import annotations

import contextlib
import functools
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable

ROWS_PER_INSERT = 16  # rows per multi-row INSERT: a step records and claims at most its free slots' worth
Statement = ClauseElement  # a Core statement (insert, update, select, text)
Params = Mapping[str, Any]
Check = Callable[[int], Exception | None]  # given the row count: the error to raise, or None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # the parameter names in order (qmark style), None for named styles
    constants: dict[str, Any]  # the values the statement itself binds (``state == State.FAILED``)

    def bind(self, params: Params) -> Any:
        given = {**self.constants, **params} if self.constants else params
        return given if self.positions is None else tuple(given[name] for name in self.positions)


# (statement, dialect, parameter names) -> its SQL. The statements are module constants, so this stays
# small; the statement itself is kept in the value so its id cannot be reused while cached.
_COMPILED: dict[tuple[int, str, tuple[str, ...]], tuple[Statement, _Compiled]] = {}
_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _compile(conn: Connection, stmt: Statement, keys: tuple[str, ...]) -> _Compiled:
    cache_key = (id(stmt), conn.dialect.name, keys)
    found = _COMPILED.get(cache_key)
    if found is None:
        compiled: Any = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        constants = {name: value for name, value in compiled.params.items() if name not in keys}
        found = (stmt, _Compiled(compiled.string, positions, constants))
        _COMPILED[cache_key] = found
    return found[1]


@functools.cache
def _multi_row(stmt: Insert, keys: tuple[str, ...], rows: int) -> Insert:
    """``stmt`` (an INSERT of a whole table) for ``rows`` rows of the columns ``keys``; its parameters are
    named ``<column>_m<row>``, as SQLAlchemy names a multi-row VALUES."""
    return stmt.values([dict.fromkeys(keys)] * rows)


def _row_type(names: tuple[str, ...]) -> Any:
    row_type = _ROW_TYPES.get(names)
    if row_type is None:
        row_type = _ROW_TYPES[names] = namedtuple("Row", names)
    return row_type


@dataclass(frozen=True)
class _Write:
    sql: _Compiled
    rows: list[Params]
    check: Check | None


class Batch:
    """Writes queued on the connection ``conn`` (inside its transaction); see the module docstring."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._writes: list[_Write] = []

    def execute(self, stmt: Statement, params: Params | Sequence[Params], check: Check | None = None) -> None:
        """Queue a write (``params``: one set, or several for an executemany); ``check`` judges its row
        count once it is sent."""
        rows = [params] if isinstance(params, Mapping) else list(params)
        if not rows:
            return
        keys = tuple(rows[0])
        if len(rows) == 1 or check is not None or not isinstance(stmt, Insert):
            self._writes.append(_Write(_compile(self.conn, stmt, keys), rows, check))
            return
        # Several rows to insert: multi-row INSERTs of up to ROWS_PER_INSERT rows, not one execution per row
        # (the server's work per statement is most of its work here; docs/benchmarks.md section 7).
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            flat = {f"{key}_m{i}": row[key] for i, row in enumerate(chunk) for key in keys}
            compiled = _compile(self.conn, _multi_row(stmt, keys, len(chunk)), tuple(flat))
            self._writes.append(_Write(compiled, [flat], None))

    def query(self, stmt: Statement, params: Params) -> list[Any]:
        """Send the queued writes and then ``stmt`` (a SELECT that must see them): its rows, as named
        tuples (attribute access by column name, like SQLAlchemy's rows)."""
        return self._send(_compile(self.conn, stmt, tuple(params)), params)

    def flush(self) -> None:
        """Send the queued writes (before the commit) and check their row counts."""
        if self._writes:
            self._send(None, {})

    def _send(self, select: _Compiled | None, params: Params) -> list[Any]:
        writes, self._writes = self._writes, []
        raw: Any = self.conn.connection.dbapi_connection
        cursors = [raw.cursor() for _ in range(len(writes) + 1)]  # one each: each keeps its row count
        sql = ""
        try:
            with raw.pipeline() if self.postgres else contextlib.nullcontext():
                for write, cursor in zip(writes, cursors, strict=False):
                    sql = write.sql.sql
                    cursor.executemany(sql, [write.sql.bind(row) for row in write.rows])
                if select is not None:
                    sql = select.sql
                    cursors[-1].execute(sql, select.bind(params))
            counts = [int(cursor.rowcount) for cursor in cursors[:len(writes)]]
            rows = []
            if select is not None:
                found = cursors[-1]
                row_type = _row_type(tuple(column[0] for column in found.description))
                rows = [row_type(*row) for row in found.fetchall()]
        except self.conn.dialect.loaded_dbapi.Error as exc:
            raise self._wrapped(exc, sql) from exc
        finally:
            for cursor in cursors:
                cursor.close()
        for write, count in zip(writes, counts, strict=True):
            problem = write.check(count) if write.check is not None else None
            if problem is not None:
                raise problem
        return rows

    def _wrapped(self, exc: Any, sql: str) -> DBAPIError:
        """``exc`` as SQLAlchemy would have raised it; a broken connection is invalidated (so the pool
        never hands it out again), as SQLAlchemy does for the statements it runs itself."""
        dialect = self.conn.dialect
        broken = dialect.is_disconnect(exc, self.conn.connection.dbapi_connection, None)
        if broken:
            self.conn.invalidate(exc)
        wrapped = DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=broken, dialect=dialect)
        return cast(DBAPIError, wrapped)


# The batch ``batched`` opened, for the thread (context) running the block; None outside one. A context
# variable, as ``counters.deferred`` keeps its sum: another thread's transactions never join it.
_OPEN: ContextVar[Batch | None] = ContextVar("failure_aware_batch", default=None)


@contextmanager
def batched(conn: Connection) -> Iterator[Batch]:
    """Queue the writes made on ``conn`` inside the block (by the writers that look for ``current``) and
    send them at its end; nothing is sent when the block raises (the transaction is rolled back)."""
    batch = Batch(conn)
    token = _OPEN.set(batch)
    try:
        yield batch
    finally:
        _OPEN.reset(token)
    batch.flush()


def current(conn: Connection) -> Batch | None:
    """The batch open on ``conn`` (``batched``), or None: then a writer sends its statements itself."""
    batch = _OPEN.get()
    return batch if batch is not None and batch.conn is conn else None


def read(conn: Connection, stmt: Statement, params: Params) -> Sequence[Any]:
    """The rows of a read that must see the writes queued on ``conn`` (sent with them when a batch is open
    there), with attribute access by column name either way."""
    open_batch = current(conn)
    if open_batch is not None:
        return open_batch.query(stmt, params)
    return list(conn.execute(cast(Executable, stmt), params))


@contextmanager
def writes(conn: Connection) -> Iterator[Batch]:
    """Where a writer queues its statements: the batch open on ``conn`` (sent later), else a new one sent
    when this block ends."""
    open_batch = current(conn)
    if open_batch is not None:
        yield open_batch
        return
    with batched(conn) as batch:
        yield batch


__all__ = ["Batch", "Check", "batched", "current", "read", "writes"]
