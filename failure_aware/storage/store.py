"""``Store``: one database, opened and schema-checked, handing out read and write transactions.

Every operation module takes a ``Store``; nothing else creates engines. Driver errors are wrapped into
``StorageError`` here (the driver's exception stays as ``__cause__``), so callers see one error tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from failure_aware.domain.errors import DatabaseUnavailable, FailureAwareError, SchemaError, StorageError
from failure_aware.domain.timeutil import Clock, to_us, utc_now
from failure_aware.storage import migrations, triggers
from failure_aware.storage.engine import WRITE_OPTION, make_engine, parse_url, resolve_url, sqlite_path
from failure_aware.storage.faults import is_transient


class Store:
    """An opened failure-aware database.

    ``readonly`` opens it so the database itself refuses writes (SQLite ``query_only``, PostgreSQL
    read-only transactions): inspection commands use it. ``create`` lets an empty database (or a missing
    SQLite file) get the latest schema; ``upgrade`` applies pending migrations instead of refusing.
    ``on_lock_wait`` (SQLite): called when a write waits for the write lock another process holds
    (``engine.make_engine``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        readonly: bool = False,
        create: bool = True,
        upgrade: bool = False,
        clock: Clock = utc_now,
        on_lock_wait: Callable[[], None] | None = None,
    ) -> None:
        self.url_text = resolve_url(url)
        self.url = parse_url(self.url_text)
        self.clock = clock
        self.readonly = readonly
        self.dialect = self.url.get_backend_name()
        path = sqlite_path(self.url) if self.dialect == "sqlite" else None
        if path is not None and not path.exists() and (readonly or not create):
            raise SchemaError(f"no failure-aware database at {path} (nothing has been recorded there yet)")
        self.engine: Engine = make_engine(self.url, readonly=readonly, on_lock_wait=on_lock_wait)
        try:
            self._open(create=create and not readonly, upgrade=upgrade and not readonly)
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def where(self) -> str:
        """The database, named for messages (password hidden)."""
        return _where(self.url)

    def now_us(self) -> int:
        """The injected clock's current time in microseconds."""
        return to_us(self.clock())

    def _open(self, *, create: bool, upgrade: bool) -> None:
        with self.read() as conn:
            version = migrations.current_version(conn)
        if version == 0:
            if not create:
                raise SchemaError(f"{self.where} has no failure-aware schema yet (nothing recorded there)")
            with self.write() as conn:
                # Re-check under the write lock: another process may have created it meanwhile.
                if migrations.current_version(conn) == 0:
                    migrations.create_fresh(conn, self.now_us())
            return
        if upgrade and version is not None and version < migrations.LATEST_VERSION:
            self.upgrade()
            return
        migrations.require(version, self.where)

    def upgrade(self) -> list[migrations.Migration]:
        """Apply pending migrations, each in its own transaction; returns those applied."""
        applied = []
        with self.read() as conn:
            version = migrations.current_version(conn)
        if version is None or version > migrations.LATEST_VERSION:
            migrations.require(version, self.where)
        for step in migrations.pending(version or 0):
            with self.write() as conn:
                migrations.apply(conn, step, self.now_us())
            applied.append(step)
        return applied

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        with self._transaction(write=True) as conn:
            yield conn

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction: a snapshot in SQLite's WAL; on PostgreSQL (READ COMMITTED) each statement
        sees what was committed when it started, unless ``snapshot``: then the transaction is REPEATABLE
        READ, one snapshot throughout (said in its BEGIN: no statement of its own)."""
        with self._transaction(write=False, snapshot=snapshot) as conn:
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool, snapshot: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as opened:
                conn = opened.execution_options(**{WRITE_OPTION: True}) if write else opened
                if snapshot and conn.dialect.name == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except FailureAwareError:
            raise
        except DBAPIError as exc:
            kind = DatabaseUnavailable if is_transient(exc) else StorageError
            raise kind(f"{self.where}: {_first_line(exc.orig)}") from exc
        except SQLAlchemyTimeout as exc:  # no pooled connection came free in time: the server is busy
            raise DatabaseUnavailable(f"{self.where}: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from exc

    def probe_triggers(self) -> list[str]:
        """Try to change history, in a transaction that is always rolled back: the problems found (see
        ``triggers.probe``). Needs a connection that may write, even on a ``readonly`` store: one is opened
        for the probe alone (SQLite holds its write lock for the few milliseconds the probe takes)."""
        engine = make_engine(self.url) if self.readonly else self.engine
        try:
            with engine.connect() as opened:
                conn = opened.execution_options(**{WRITE_OPTION: True})
                transaction = conn.begin()
                try:
                    return triggers.probe(conn)
                finally:
                    transaction.rollback()
        except DBAPIError as exc:
            return [f"could not check the triggers by trying a change (in a transaction rolled back): "
                    f"{_first_line(exc.orig)}"]
        finally:
            if engine is not self.engine:
                engine.dispose()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


@dataclass(frozen=True)
class SchemaStatus:
    """A database's schema version as found (``db version``): nothing checked, created or upgraded.

    ``version`` is ``0`` for an empty database (or a SQLite file that does not exist: ``exists`` false) and
    ``None`` for one holding tables that are not ours.
    """

    where: str
    version: int | None
    exists: bool = True

    @property
    def latest(self) -> int:
        """The version this failure-aware creates and needs."""
        return migrations.LATEST_VERSION

    @property
    def pending(self) -> list[migrations.Migration]:
        """The migrations ``db upgrade`` would apply (none for a foreign or newer schema)."""
        return [] if self.version is None else migrations.pending(self.version)

    @property
    def problem(self) -> str | None:
        """Why the database cannot be used as it is, or ``None``."""
        if not self.exists:
            return f"no failure-aware database at {self.where} (nothing has been recorded there yet)"
        if self.version == 0:
            return f"{self.where} has no failure-aware schema yet (nothing recorded there)"
        return migrations.describe_problem(self.version, self.where)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "database": self.where, "exists": self.exists, "version": self.version, "latest": self.latest,
            "pending": [{"version": m.version, "description": m.description} for m in self.pending],
            "problem": self.problem,
        }


class _UncheckedStore(Store):
    """A store that opens without checking the schema (only for reading its version)."""

    def _open(self, *, create: bool, upgrade: bool) -> None:
        return None


def inspect_schema(url: str | None = None) -> SchemaStatus:
    """Read the schema version of the database at ``url`` without checking, creating or changing anything."""
    parsed = parse_url(resolve_url(url))
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and not path.exists():
        return SchemaStatus(where=_where(parsed), version=0, exists=False)
    store = _UncheckedStore(url, readonly=True)
    try:
        with store.read() as conn:
            return SchemaStatus(where=store.where, version=migrations.current_version(conn))
    finally:
        store.dispose()


def _where(url: URL) -> str:
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else "database error"
    return text.splitlines()[0] if text else type(exc).__name__
