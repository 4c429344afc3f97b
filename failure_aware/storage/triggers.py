"""Database triggers that make the history tables append-only on both backends.

The application never updates or deletes history; the triggers make the database itself refuse it, so a
stray script or a bug cannot rewrite what happened (SPEC section 1).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from .tables import HISTORY_TABLES

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
