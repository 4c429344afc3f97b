"""Database URLs and engines: which backend, and how each is set up.

Resolution order (SPEC section 2): an explicit URL (``--db``), then ``FAILURE_AWARE_DB``, then the embedded
default ``sqlite:///failure-aware.db`` in the working directory.
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from failure_aware.domain.errors import StorageError

DEFAULT_URL = "sqlite:///failure-aware.db"
SCHEMA_TABLE = "failure_aware_schema"  # tables.schema_version: what marks a database as ours
ENV_VAR = "FAILURE_AWARE_DB"

# Execution option a connection sets to ask SQLite for BEGIN IMMEDIATE: a write transaction takes the
# write lock up front, so two writers queue on busy_timeout instead of failing mid-transaction.
WRITE_OPTION = "failure_aware_write"
BUSY_TIMEOUT_MS = 30_000  # how long a SQLite statement waits for a lock before "database is locked"
# With an ``on_lock_wait`` listener, a write transaction first tries for the write lock this long; when
# another process still holds it, the listener is told (once per wait) and the rest of the timeout follows.
LOCK_NOTICE_MS = 250


def resolve_url(explicit: str | None = None) -> str:
    """The database URL to use: explicit, then the environment, then the default."""
    if explicit:
        return explicit
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_url(raw: str) -> URL:
    """Parse and normalise a URL to a driver we support, or raise ``StorageError`` naming the problem."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise StorageError(
            f"{raw!r} is not a database URL; use sqlite:///path.db or postgresql://user@host/dbname"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise StorageError(f"unsupported SQLite driver {url.drivername!r}; use sqlite:///path.db")
        return url.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        if url.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise StorageError(f"unsupported PostgreSQL driver {url.drivername!r}; use postgresql://...")
        return url.set(drivername="postgresql+psycopg")
    raise StorageError(f"unsupported database {backend!r} in {raw!r}; use sqlite:///... or postgresql://...")


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    if not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_engine(
    url: URL, *, readonly: bool = False, on_lock_wait: Callable[[], None] | None = None
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and explicit transactions.

    ``on_lock_wait`` (SQLite): called when a write transaction has waited ``LOCK_NOTICE_MS`` for the write
    lock another connection holds, before it waits on (so a command can say why it seems to hang).
    """
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, readonly=readonly, on_lock_wait=on_lock_wait)
    return _postgres_engine(url, readonly=readonly)


def _sqlite_engine(url: URL, *, readonly: bool, on_lock_wait: Callable[[], None] | None = None) -> Engine:
    path = sqlite_path(url)
    if path is None:
        raise StorageError("in-memory SQLite is not supported: give a file, e.g. sqlite:///failure-aware.db")
    # Pooled: opening a connection per transaction costs a WAL checkpoint and an fsync on every close
    # (measured: 2.5x slower attempt cycles). Pools are dropped in forked children (see _fork_safe).
    engine = _fork_safe(create_engine(url, connect_args={"timeout": 30}))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event (below) issue BEGIN itself instead of pysqlite's implicit one.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if readonly:
            cursor.execute("PRAGMA query_only = ON")
        else:
            if _ours_or_empty(cursor):  # WAL mode is written into the file: never into someone else's
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        if write and on_lock_wait is not None:
            _begin_immediate_noticed(conn.connection.driver_connection, on_lock_wait)
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _begin_immediate_noticed(raw: sqlite3.Connection, on_lock_wait: Callable[[], None]) -> None:
    """``BEGIN IMMEDIATE``, telling ``on_lock_wait`` when the write lock is not free within
    ``LOCK_NOTICE_MS``: a short first busy timeout, then the notice and the rest of the usual timeout.
    Costs two PRAGMAs (no I/O) per write transaction when the lock is free."""
    try:
        raw.execute(f"PRAGMA busy_timeout = {LOCK_NOTICE_MS}")
        try:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) != sqlite3.SQLITE_BUSY:
                    raise
            on_lock_wait()
            raw.execute(f"PRAGMA busy_timeout = {max(0, BUSY_TIMEOUT_MS - LOCK_NOTICE_MS)}")
            raw.execute("BEGIN IMMEDIATE")
        finally:
            raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:  # as SQLAlchemy would have wrapped it: the store names it (``faults``)
        raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc


def _ours_or_empty(cursor: Any) -> bool:
    """Whether the SQLite database is empty (ours to create) or holds our version table. Anything else is
    a foreign file, which every command refuses (``migrations.current_version``) and leaves byte for byte
    as it was: so no PRAGMA that writes (``journal_mode = WAL``) may touch it first."""
    names = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return not names or SCHEMA_TABLE in names


def _postgres_engine(url: URL, *, readonly: bool) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if readonly:
        # connect_args replace the URL's own query arguments, so keep any ``options`` the URL carries
        # (e.g. ``-csearch_path=...``) and add ours.
        given = url.query.get("options")
        given_text = " ".join(given) if isinstance(given, tuple) else (given or "")
        connect_args["options"] = f"{given_text} -c default_transaction_read_only=on".strip()
    # No pre-ping: it doubles the round trips of a worker's short transactions. Connections are recycled
    # after 30 minutes; one dropped by a server restart fails one transaction with a StorageError.
    return _fork_safe(create_engine(url, pool_size=4, pool_recycle=1800, connect_args=connect_args))


def _fork_safe(engine: Engine) -> Engine:
    """Make a forked child start with an empty pool instead of sharing its parent's connections."""
    ref = weakref.ref(engine)

    def _drop_inherited_pool() -> None:
        inherited = ref()
        if inherited is not None:
            inherited.dispose(close=False)

    os.register_at_fork(after_in_child=_drop_inherited_pool)
    return engine
