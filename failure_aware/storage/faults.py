"""Which database errors are faults of the connection (worth retrying) rather than of the request.

A worker keeps going through a server restart or a terminated connection (SPEC section 14), but must not
retry forever what can never succeed (a missing table, a constraint a bug broke): those are raised at
once. The test is by what the driver says, on the error the store caught:

- SQLAlchemy marked the connection invalidated (a disconnect it recognised), or
- PostgreSQL: no SQLSTATE (the connection itself failed: refused, reset, closed), class 08 (connection
  exception), 57P01-57P03 (administrator shutdown or termination, crash, cannot connect now), 53
  (insufficient resources: too many connections, out of memory or disk), 40001/40P01 (serialization
  failure, deadlock: the transaction was rolled back), 55P03 (lock not available), 57014 (cancelled);
- SQLite: ``database is locked`` / ``busy`` past the busy timeout, a disk I/O error, a file that cannot be
  opened.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

_PG_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014"})
_PG_TRANSIENT_CLASSES = ("08", "53")
_SQLITE_TRANSIENT_WORDS = ("database is locked", "database table is locked", "busy", "disk i/o error",
                           "unable to open database file")


def is_transient(exc: DBAPIError) -> bool:
    """Whether ``exc`` (a driver error wrapped by SQLAlchemy) means the database was unavailable."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    module = type(orig).__module__ or ""
    if module.startswith("psycopg"):
        state = getattr(orig, "sqlstate", None)
        if state is None:
            return type(orig).__name__ in ("OperationalError", "InterfaceError")
        return state in _PG_TRANSIENT_STATES or state.startswith(_PG_TRANSIENT_CLASSES)
    if module.startswith("sqlite3"):
        if type(orig).__name__ != "OperationalError":
            return False
        text = str(orig).lower()
        return any(word in text for word in _SQLITE_TRANSIENT_WORDS)
    return False
