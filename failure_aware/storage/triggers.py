"""Database triggers that make the history tables append-only on both backends.

The application never updates or deletes history; the triggers make the database itself refuse it, so a
stray script or a bug cannot rewrite what happened (SPEC section 1).
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import DBAPIError

from failure_aware.storage.tables import HISTORY_TABLES, annotation, attempt, event_detected, transition

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION failure_aware_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'failure-aware: % on % refused: history is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql
"""


def trigger_names(table_name: str) -> list[str]:
    """The names of the triggers guarding one history table."""
    return [f"{table_name}_no_update", f"{table_name}_no_delete"]


def install(conn: Connection) -> None:
    """Create the immutability triggers for every history table (idempotent)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text(_PG_FUNCTION))
    for table in HISTORY_TABLES:
        name = table.name
        if dialect == "sqlite":
            for op in ("UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER IF NOT EXISTS {name}_no_{op.lower()} BEFORE {op} ON {name} "
                        f"BEGIN SELECT RAISE(ABORT, 'failure-aware: {op} on {name} refused: "
                        f"history is append-only'); END"
                    )
                )
        else:
            for op in ("UPDATE", "DELETE"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}_no_{op.lower()} ON {name}"))
                conn.execute(
                    text(
                        f"CREATE TRIGGER {name}_no_{op.lower()} BEFORE {op} ON {name} "
                        "FOR EACH ROW EXECUTE FUNCTION failure_aware_refuse_change()"
                    )
                )
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}_no_truncate ON {name}"))
            conn.execute(
                text(
                    f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION failure_aware_refuse_change()"
                )
            )


def missing(conn: Connection) -> list[str]:
    """Names of immutability triggers that should exist but do not (empty when all are in place)."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        rows = conn.execute(
            text(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND n.nspname = current_schema()"
            )
        )
    present = {row[0] for row in rows}
    expected = [n for table in HISTORY_TABLES for n in trigger_names(table.name)]
    return [n for n in expected if n not in present]


# Probe rows: ids no writer ever uses (ids are positive), so nothing else is touched or waited for.
_PROBE_EVENT, _PROBE_PARENT = -1, -2
_PROBE_TYPE = "failure-aware.verify-probe"


def probe(conn: Connection) -> list[str]:
    """Check the triggers by what they do: problems for each history table that accepts an UPDATE or a
    DELETE. Run it in a transaction that the caller always rolls back (it inserts probe rows, with
    negative ids, and tries to change them), so it leaves nothing behind whatever it finds.

    A trigger checked by name alone can be dropped and replaced by a decoy of that name that lets changes
    through, or disabled; only trying the change shows whether the database still refuses it.
    """
    conn.execute(insert(event_detected), [
        {"id": event_id, "event_type": _PROBE_TYPE, "key": f"probe{event_id}", "payload": "{}",
         "detected_at_us": 0, "recorded_at_us": 0} for event_id in (_PROBE_EVENT, _PROBE_PARENT)
    ])
    conn.execute(insert(attempt).values(
        id=_PROBE_EVENT, event_id=_PROBE_PARENT, event_type=_PROBE_TYPE, number=1, at_us=0,
        outcome="succeeded", forced=False, actor="verify"))
    conn.execute(insert(transition).values(
        id=_PROBE_EVENT, event_id=_PROBE_PARENT, at_us=0, to_state="PENDING", actor="verify", reason="probe"))
    conn.execute(insert(annotation).values(
        id=_PROBE_EVENT, event_id=_PROBE_PARENT, author="verify", at_us=0, text="probe"))
    problems = []
    for table in HISTORY_TABLES:
        for statement in (f"UPDATE {table.name} SET at_us = at_us WHERE id = {_PROBE_EVENT}"
                          if table is not event_detected else
                          f"UPDATE {table.name} SET key = key WHERE id = {_PROBE_EVENT}",
                          f"DELETE FROM {table.name} WHERE id = {_PROBE_EVENT}"):
            savepoint = conn.begin_nested()
            try:
                changed = conn.execute(text(statement)).rowcount
            except DBAPIError:
                savepoint.rollback()  # refused: as it must be
                continue
            savepoint.rollback()
            if changed:
                verb = statement.split()[0]
                problems.append(f"history table {table.name} accepts {verb}: its append-only trigger is "
                                "missing, disabled or does not refuse (tried in a transaction rolled back)")
    return problems
