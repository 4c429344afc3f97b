"""Schema versions: a fresh schema equals a migrated one; old, newer and foreign databases are handled.

The fresh path (``create_fresh``: the live table definitions in one step) and the upgrade path (every
migration in order, each in its own transaction) must give the same tables, columns, types, nullability,
defaults, keys, indexes, constraints and triggers, on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, drop_database, make_database

from failure_aware import Ledger, SchemaError, State
from failure_aware.config import Config
from failure_aware.events.rows import attempt_from_row
from failure_aware.storage import migrations
from failure_aware.storage.tables import attempt, schema_version

NOW_US = 1_767_326_400_000_000  # 2026-01-02T04:00:00Z, the FakeClock's start


@pytest.fixture
def second_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another empty database of the same backend."""
    url, token = make_database(backend, tmp_path_factory)
    yield url
    drop_database(token)


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url)


def migrate(url: str, upto: int | None = None) -> None:
    """Apply the migrations one by one (up to version ``upto``), each in its own transaction."""
    engine = engine_for(url)
    try:
        for step in migrations.MIGRATIONS:
            if upto is not None and step.version > upto:
                break
            with engine.begin() as conn:
                migrations.apply(conn, step, NOW_US)
    finally:
        engine.dispose()


def triggers_of(conn: sa.Connection) -> set[tuple[str, ...]]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(sa.text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"))
        return {(name, table, " ".join(sql.split())) for name, table, sql in rows}
    rows = conn.execute(sa.text(
        "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
    ))
    # The definition names the schema (each test database has its own): compare it without.
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    return {(name, table, ddl.replace(f"{schema}.", "")) for name, table, ddl in rows}


def _options(options: dict[str, Any]) -> str:
    """An index's dialect options (a partial index's WHERE clause) as comparable text."""
    return repr(sorted((k, " ".join(str(v).split())) for k, v in options.items()))


def describe(url: str) -> dict[str, Any]:
    """Everything about the schema that the two paths must agree on (not the data)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables: dict[str, Any] = {}
            for name in sorted(inspector.get_table_names()):
                tables[name] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                        for c in inspector.get_columns(name)
                    ],
                    "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
                    "foreign_keys": sorted(
                        (tuple(k["constrained_columns"]), k["referred_table"], tuple(k["referred_columns"]))
                        for k in inspector.get_foreign_keys(name)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]),
                         _options(i.get("dialect_options", {})))
                        for i in inspector.get_indexes(name)
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(name)
                    ),
                    "checks": sorted(
                        (c["name"], " ".join(c["sqltext"].split()))
                        for c in inspector.get_check_constraints(name)
                    ),
                }
            return {"tables": tables, "triggers": triggers_of(conn)}
    finally:
        engine.dispose()


def test_a_fresh_schema_equals_a_migrated_one(db_url: str, second_url: str, clock: FakeClock) -> None:
    Ledger(db_url, config=Config(), clock=clock).close()  # the fresh path
    migrate(second_url)  # the upgrade path, step by step
    fresh, migrated = describe(db_url), describe(second_url)
    assert set(fresh["tables"]) >= {"event_detected", "attempt", "transition", "annotation", "event_state"}
    assert len(fresh["triggers"]) >= 8  # UPDATE and DELETE on each of the four history tables
    for name in fresh["tables"]:
        assert fresh["tables"][name] == migrated["tables"].get(name), f"table {name} differs"
    assert set(fresh["tables"]) == set(migrated["tables"])
    assert fresh["triggers"] == migrated["triggers"]
    with Ledger(second_url, config=Config(), clock=clock) as migrated_ledger:
        assert migrated_ledger.verify().ok


def v1_database_with_an_event(url: str) -> None:
    """A database at schema version 1, holding one FAILED event written through the v1 tables."""
    migrate(url, upto=1)
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO event_detected (id, event_type, key, payload, detected_at_us, recorded_at_us) "
                "VALUES (1, 'pay.webhook', 'evt_1', '{}', :t, :t)"
            ), {"t": NOW_US})
            conn.execute(sa.text(
                "INSERT INTO transition (event_id, at_us, from_state, to_state, actor, reason) "
                "VALUES (1, :t, NULL, 'PENDING', 'system', 'detected')"
            ), {"t": NOW_US})
            conn.execute(sa.text(
                "INSERT INTO event_state (event_id, event_type, state, detected_at_us, attempt_count, "
                "budget_failures, due_at_us, updated_at_us, claim_forced) "
                "VALUES (1, 'pay.webhook', 'PENDING', :t, 0, 0, :t, :t, false)"
            ), {"t": NOW_US})
    finally:
        engine.dispose()


def nonzero(counts: dict[State, int]) -> dict[State, int]:
    return {state: n for state, n in counts.items() if n}


def test_an_older_schema_is_refused_until_upgraded(db_url: str, clock: FakeClock) -> None:
    v1_database_with_an_event(db_url)
    for readonly in (False, True):
        with pytest.raises(SchemaError, match=r"version 1\b.*db upgrade"):
            Ledger(db_url, readonly=readonly, config=Config(), clock=clock)
    with Ledger(db_url, upgrade=True, config=Config(), clock=clock) as ledger:
        assert ledger.get(1).state is State.PENDING  # the data came through
        assert nonzero(ledger.state_counts()) == {State.PENDING: 1}  # counters backfilled by the upgrade
        assert ledger.verify().ok
        assert ledger.upgrade() == []  # nothing left to do
        ledger.report(1, False, error_type="TimeoutError", error="timed out")
        assert nonzero(ledger.state_counts()) == {State.FAILED: 1}
    with engine_for(db_url).connect() as conn:
        versions = conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version))
        assert list(versions.scalars()) == [m.version for m in migrations.MIGRATIONS]


def test_an_upgraded_schema_equals_a_fresh_one(db_url: str, second_url: str, clock: FakeClock) -> None:
    v1_database_with_an_event(db_url)
    Ledger(db_url, upgrade=True, config=Config(), clock=clock).close()
    Ledger(second_url, config=Config(), clock=clock).close()
    assert describe(db_url) == describe(second_url)


def test_a_newer_schema_is_refused(ledger: Ledger, db_url: str, clock: FakeClock) -> None:
    newer = migrations.LATEST_VERSION + 1
    with ledger.store.write() as conn:
        conn.execute(sa.insert(schema_version).values(version=newer, description="future", applied_at_us=0))
    for upgrade in (False, True):
        with pytest.raises(SchemaError, match=f"version {newer}, newer"):
            Ledger(db_url, upgrade=upgrade, config=Config(), clock=clock)


FOREIGN_TABLES = {
    # the seed's v0.x layout: one of our table names, not our schema, no version table
    "event_detected": "CREATE TABLE event_detected (id INTEGER PRIMARY KEY, event_type TEXT,"
                      " sync_status TEXT, retry_count INTEGER, last_error TEXT, next_retry_at TEXT)",
    # somebody else's database altogether
    "invoices": "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)",
}


@pytest.mark.parametrize("table", sorted(FOREIGN_TABLES))
def test_a_foreign_database_is_refused_and_left_alone(db_url: str, clock: FakeClock, table: str) -> None:
    engine = engine_for(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(FOREIGN_TABLES[table]))
    for upgrade in (False, True):
        with pytest.raises(SchemaError, match="not a failure-aware database"):
            Ledger(db_url, upgrade=upgrade, config=Config(), clock=clock)
    assert sa.inspect(engine).get_table_names() == [table]  # nothing of ours was added next to it
    engine.dispose()


def test_readonly_open_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "nothing-here.db"
    with pytest.raises(SchemaError, match="no failure-aware database"):
        Ledger(f"sqlite:///{missing}", readonly=True, config=Config())
    assert not missing.exists() and not missing.parent.exists()
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(SchemaError):
        Ledger(f"sqlite:///{missing}", readonly=True, config=Config())
    assert list(tmp_path.iterdir()) == [], "a readonly open must not create a file (or its -wal/-shm)"


def test_readonly_open_of_an_empty_database_creates_no_schema(db_url: str) -> None:
    engine = engine_for(db_url)
    if engine.dialect.name == "sqlite":  # an existing, empty file
        Path(db_url.removeprefix("sqlite:///")).touch()
    with pytest.raises(SchemaError, match="no failure-aware schema"):
        Ledger(db_url, readonly=True, config=Config())
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_v3_rebuilds_clusters_stored_in_the_v2_form(db_url: str, second_url: str, clock: FakeClock) -> None:
    """A v2 database with clusters stored with example messages and no remembered total: the upgrade
    clears that derived data, and the next correlate rebuilds it (as on a fresh database)."""
    v1_database_with_an_event(db_url)
    migrate_from = engine_for(db_url)
    try:
        with migrate_from.begin() as conn:
            migrations.apply(conn, migrations.MIGRATIONS[1], NOW_US)
            conn.execute(sa.text(
                "INSERT INTO failure_cluster VALUES ('c_old', 'pay.webhook', :t, :t, 3, 2, "
                "'[[\"abc\", 3, \"timed out\"]]', 600, 3, 2)"), {"t": NOW_US})
            conn.execute(sa.text("INSERT INTO correlation_state VALUES (1, 600000000, 3, 2, 0, :t)"),
                         {"t": NOW_US})
    finally:
        migrate_from.dispose()
    with Ledger(db_url, upgrade=True, config=Config(), clock=clock) as ledger:
        assert ledger.clusters() == []
        assert ledger.correlate().mode == "rebuild"  # nothing remembered: the first run rebuilds
        assert ledger.verify().ok
    Ledger(second_url, config=Config(), clock=clock).close()
    assert describe(db_url) == describe(second_url)


def test_a_v3_database_gains_the_attempt_columns_and_equals_a_fresh_one(
    db_url: str, second_url: str, clock: FakeClock
) -> None:
    migrate(db_url, upto=3)
    engine = engine_for(db_url)
    try:
        with engine.begin() as conn:  # an event and a failed attempt, written through the v3 tables
            conn.execute(sa.text(
                "INSERT INTO event_detected (id, event_type, key, payload, detected_at_us, recorded_at_us) "
                "VALUES (1, 'pay.webhook', 'evt_1', '{}', :t, :t)"), {"t": NOW_US})
            conn.execute(sa.text(
                "INSERT INTO attempt (event_id, event_type, number, at_us, outcome, error_type, error, "
                "fingerprint, forced, actor) VALUES (1, 'pay.webhook', 1, :t, 'failed', 'E', 'boom', 'f', "
                "false, 'system')"), {"t": NOW_US + 1})
    finally:
        engine.dispose()
    with Ledger(db_url, upgrade=True, config=Config(), clock=clock) as ledger:
        with ledger.store.read() as conn:
            old = attempt_from_row(conn.execute(sa.select(attempt)).one())
        assert (old.error, old.traceback, old.duration_seconds, old.detail) == ("boom", None, None, None)
    Ledger(second_url, config=Config(), clock=clock).close()
    assert describe(db_url) == describe(second_url)
