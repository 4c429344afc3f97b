"""Schema versions: an ordered list of migrations, each applied in one transaction with its record.

A fresh database is created from the current table definitions in one step and stamped with the latest
version; an older one is brought forward by ``failure-aware db upgrade`` (``Ledger(..., upgrade=True)``),
which applies the missing steps in order. A test checks that both paths give the same schema.

Rule for future steps: a released step never changes. When a later version alters a table that an earlier
step created from the live definition in ``tables.py``, that earlier step must first be given a frozen copy
of the definition it created, and the later step the ``ALTER`` that gets from there to the new one.

Why not Alembic: our steps need backend-specific trigger DDL and a data backfill, and we want upgrades
callable from the library without a migration script directory on disk; this runner is small, recorded in
a table like Alembic's, and tested on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    select,
    text,
)

from failure_aware.domain.errors import SchemaError
from failure_aware.storage import backfill, tables, triggers
from failure_aware.storage.tables import metadata, schema_version


@dataclass(frozen=True)
class Migration:
    """One schema step: its version number, what it does, and the function that does it."""

    version: int
    description: str
    apply: Callable[[Connection], None]


# Frozen for v1 and v2: what they created where v3 and v4 later changed the live definition.
_V1_FAILURE_INDEX = (
    f"CREATE INDEX ix_attempt_failures ON attempt (event_type, at_us, event_id) WHERE {tables.FAILURE_SQL}"
)
_V2_CORRELATION_STATE = Table(
    "correlation_state",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("window_us", BigInteger, nullable=False),
    Column("min_failures", Integer, nullable=False),
    Column("min_events", Integer, nullable=False),
    Column("last_attempt_id", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)


# The attempt table as v1 created it (v4 added traceback, duration_us and detail).
_V4_ATTEMPT_COLUMNS = (("traceback", "TEXT"), ("duration_us", "BIGINT"), ("detail", "TEXT"))


def _v1_attempt(target: MetaData) -> Table:
    tables.event_detected.to_metadata(target)  # what its foreign key refers to
    frozen = Table(
        "attempt",
        target,
        Column("id", tables.Id, primary_key=True, autoincrement=True),
        Column("event_id", ForeignKey("event_detected.id"), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("number", Integer, nullable=False),
        Column("started_at_us", BigInteger),
        Column("at_us", BigInteger, nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("error_type", String(200)),
        Column("error", Text),
        Column("fingerprint", String(32)),
        Column("forced", Boolean, nullable=False, server_default=text("false")),
        Column("actor", String(200), nullable=False),
        UniqueConstraint("event_id", "number", name="uq_attempt_event_number"),
        CheckConstraint("outcome IN ('succeeded', 'failed', 'abandoned')", name="ck_attempt_outcome"),
    )
    Index("ix_attempt_event", frozen.c.event_id, frozen.c.number)
    Index("ix_attempt_at", frozen.c.at_us)
    return frozen


# Columns that later versions add to the tables v1 creates from the live definitions (attempt is frozen in
# ``_v1_attempt`` instead): v1 drops them again (both backends drop a column of an empty table cheaply), so
# that the later step can add them.
_LATER_COLUMNS = {
    "event_detected": ("chain_seq", "chain_hash"),
    "transition": ("chain_seq", "chain_hash"), "annotation": ("chain_seq", "chain_hash"),
    "event_state": ("chain_seq", "chain_hash"),
}


# The tables v5 gives chain columns to.
_CHAINED_TABLES = ("event_detected", "attempt", "transition", "annotation", "event_state")


def _v1_core_ledger(conn: Connection) -> None:
    attempt_v1 = _v1_attempt(MetaData())
    for table in (tables.event_detected, attempt_v1, tables.transition, tables.annotation,
                  tables.event_state):
        table.create(conn)
    conn.execute(text(_V1_FAILURE_INDEX))
    for table_name, columns in _LATER_COLUMNS.items():
        for column in columns:
            conn.execute(text(f"ALTER TABLE {table_name} DROP COLUMN {column}"))
    triggers.install(conn)


def _v2_derived(conn: Connection) -> None:
    for table in (tables.state_count, tables.failure_cluster, _V2_CORRELATION_STATE):
        table.create(conn)
    conn.execute(text("DROP INDEX ix_failure_cluster_start"))  # the live one is v7's
    # Backfill the counters from the projection so health is right on an upgraded database.
    es = tables.event_state
    counts = select(es.c.event_type, es.c.state, func.count()).group_by(es.c.event_type, es.c.state)
    rows = [{"event_type": t, "state": s, "n": n} for t, s, n in conn.execute(counts)]
    if rows:
        conn.execute(insert(tables.state_count), rows)


def _v3_index_only_correlation(conn: Connection) -> None:
    # The failure index gains the fingerprint (a rebuild becomes an index-only scan).
    conn.execute(text("DROP INDEX ix_attempt_failures"))
    next(i for i in tables.attempt.indexes if i.name == "ix_attempt_failures").create(conn)
    # Stored clusters lose their example messages and gain a remembered total: derived data, so it is
    # cleared; the next `correlate` rebuilds it (cluster notes are kept against type and span, not rows).
    conn.execute(text("DELETE FROM failure_cluster"))
    conn.execute(text("DELETE FROM correlation_state"))
    conn.execute(text("ALTER TABLE correlation_state ADD COLUMN cluster_count BIGINT NOT NULL DEFAULT 0"))


def _v4_attempt_detail(conn: Connection) -> None:
    # New nullable columns only: history rows stay as they were (ADD COLUMN rewrites no row on either
    # backend, and the append-only triggers refuse UPDATE, not ALTER).
    for name, kind in _V4_ATTEMPT_COLUMNS:
        conn.execute(text(f"ALTER TABLE attempt ADD COLUMN {name} {kind}"))


def _v5_hash_chains(conn: Connection) -> None:
    # Every history row gets its place and hash in its event's chain (cluster notes: their type's chain),
    # every event_state row the head of its chain. Existing rows are hashed here: the append-only triggers
    # refuse the UPDATE, so this transaction drops the UPDATE triggers, fills the columns and installs the
    # triggers again. Both backends do DDL inside the transaction, so no other session ever sees a history
    # table without its trigger (PostgreSQL locks the tables until commit; SQLite's write lock is held).
    for table_name in _CHAINED_TABLES:
        conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN chain_seq INTEGER"))
        conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN chain_hash VARCHAR(64)"))
    tables.note_chain.create(conn)
    for table in tables.HISTORY_TABLES:
        on = f" ON {table.name}" if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER IF EXISTS {table.name}_no_update{on}"))
    backfill.hash_existing_history(conn)
    triggers.install(conn)


def _v8_api(conn: Connection) -> None:
    # Tokens of `serve`, and attempt counters for /metrics, backfilled from history.
    for table in (tables.attempt_total, tables.api_token):
        table.create(conn)
    at = tables.attempt
    counts = select(at.c.event_type, at.c.outcome, func.count()).group_by(at.c.event_type, at.c.outcome)
    rows = [{"event_type": t, "outcome": o, "n": n} for t, o, n in conn.execute(counts)]
    if rows:
        conn.execute(insert(tables.attempt_total), rows)


def _v7_incidents(conn: Connection) -> None:
    # Incidents (SPEC 13) and the index that finds clusters of any type near a time.
    next(i for i in tables.failure_cluster.indexes if i.name == "ix_failure_cluster_start").create(conn)
    for table in (tables.incident, tables.incident_cluster):
        table.create(conn)
    # Incidents are derived from the clusters by `correlate`: clear the correlation so the next run is a
    # rebuild and computes both (cluster notes are kept against type and span, not rows).
    conn.execute(text("DELETE FROM failure_cluster"))
    conn.execute(text("DELETE FROM correlation_state"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "core ledger: events, attempts, transitions, annotations, state projection", _v1_core_ledger
    ),
    Migration(2, "derived data: state counters, failure clusters, correlation state", _v2_derived),
    Migration(
        3, "fingerprints in the failure index; cluster examples read, not stored (clusters are rebuilt by "
        "the next correlate)", _v3_index_only_correlation,
    ),
    Migration(
        4, "attempts keep the handler's traceback, their duration and a detail object", _v4_attempt_detail
    ),
    Migration(
        5, "tamper evidence: history rows chained by hash per event (cluster notes per event type)",
        _v5_hash_chains,
    ),
    Migration(
        7, "incidents: clusters of several types that start together (clusters are rebuilt by the next "
        "correlate)", _v7_incidents,
    ),
    Migration(8, "HTTP API: token table (hashed secrets), attempt counters per type and outcome", _v8_api),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int | None:
    """The schema version of the database, ``0`` for an empty one, ``None`` for a foreign one.

    A database (or PostgreSQL schema) holding any other tables counts as foreign: we never add our tables
    next to someone else's. Point ``--db`` at an empty database, or a dedicated PostgreSQL schema.
    """
    names = set(inspect(conn).get_table_names())
    if schema_version.name not in names:
        return 0 if not names else None
    version = conn.execute(select(func.max(schema_version.c.version))).scalar()
    return int(version or 0)


def create_fresh(conn: Connection, now_us: int) -> None:
    """Create the latest schema in an empty database and record every version as applied."""
    metadata.create_all(conn)
    triggers.install(conn)
    conn.execute(
        insert(schema_version),
        [{"version": m.version, "description": m.description, "applied_at_us": now_us} for m in MIGRATIONS],
    )


def pending(version: int) -> list[Migration]:
    """The migrations not yet applied to a database at ``version``."""
    return [m for m in MIGRATIONS if m.version > version]


def apply(conn: Connection, migration: Migration, now_us: int) -> None:
    """Apply one migration and record it (the caller owns the transaction, so both or neither land)."""
    if migration.version == 1:
        schema_version.create(conn, checkfirst=True)
    migration.apply(conn)
    conn.execute(
        insert(schema_version),
        {"version": migration.version, "description": migration.description, "applied_at_us": now_us},
    )


def describe_problem(version: int | None, where: str) -> str | None:
    """A message for a database we cannot use as it is, or ``None`` when it is at the latest version."""
    if version is None:
        return (
            f"{where} holds tables that are not a failure-aware database (no version table); use an "
            "empty database. If it is a database of the seed's v0.1-v0.3 schema, import it into a new "
            "one: failure-aware --db NEW_URL import --legacy PATH"
        )
    if version > LATEST_VERSION:
        return (
            f"{where} has schema version {version}, newer than this failure-aware supports "
            f"({LATEST_VERSION}); upgrade the failure-aware package"
        )
    if version < LATEST_VERSION:
        return (
            f"{where} has schema version {version}; this failure-aware needs {LATEST_VERSION}. "
            "Run: failure-aware db upgrade"
        )
    return None


def require(version: int | None, where: str) -> None:
    """Raise ``SchemaError`` unless the database is at the latest version."""
    problem = describe_problem(version, where)
    if problem:
        raise SchemaError(problem)
