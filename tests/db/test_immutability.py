"""History is append-only, enforced by the database itself (SPEC section 1).

A stray script with its own connection (not our ``Store``) tries UPDATE and DELETE on every history table,
and TRUNCATE on PostgreSQL: each is refused by the triggers, and every row is unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import Ledger, StorageError
from failure_aware.storage.tables import HISTORY_TABLES

HISTORY = [table.name for table in HISTORY_TABLES]
# One column per table to "change" (to itself: even a no-op update is refused, row by row).
COLUMN = {"event_detected": "key", "attempt": "number", "transition": "reason", "annotation": "text"}


@pytest.fixture
def raw(ledger: Ledger, clock: FakeClock, db_url: str) -> Iterator[sa.Engine]:
    """A ledger with rows in every history table, and a plain engine on it that is not our Store."""
    event = ledger.detect("pay.webhook", {"amount": 12}, key="evt_1")
    ledger.report(event.id, False, error_type="TimeoutError", error="timed out after 30s")
    clock.advance(60)
    ledger.report(event.id, True)
    ledger.annotate(event.id, "provider incident", author="ops")
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]
            for table in HISTORY_TABLES
        }


def refused(engine: sa.Engine, sql: str) -> str:
    """Run ``sql`` in its own transaction; it must fail. Returns the database's message."""
    with pytest.raises(sa.exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(sa.text(sql))
    return str(info.value.orig)


def test_every_history_table_has_rows(raw: sa.Engine) -> None:
    assert all(rows for rows in snapshot(raw).values())  # else the refusals below would prove nothing


@pytest.mark.parametrize("table", HISTORY)
def test_update_is_refused(raw: sa.Engine, table: str) -> None:
    before = snapshot(raw)
    column = COLUMN[table]
    message = refused(raw, f"UPDATE {table} SET {column} = {column}")
    assert "append-only" in message and table in message
    assert snapshot(raw) == before


@pytest.mark.parametrize("table", HISTORY)
def test_delete_is_refused(raw: sa.Engine, table: str) -> None:
    before = snapshot(raw)
    message = refused(raw, f"DELETE FROM {table}")
    assert "append-only" in message and table in message
    assert snapshot(raw) == before


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no TRUNCATE: DELETE is its equivalent
@pytest.mark.parametrize("table", HISTORY)
def test_truncate_is_refused_on_postgresql(raw: sa.Engine, table: str) -> None:
    before = snapshot(raw)
    message = refused(raw, f"TRUNCATE {table} CASCADE")
    assert "append-only" in message
    assert snapshot(raw) == before


def test_the_store_reports_a_refusal_as_a_storage_error(ledger: Ledger, raw: sa.Engine) -> None:
    before = snapshot(raw)
    with pytest.raises(StorageError, match="append-only"), ledger.store.write() as conn:
        conn.execute(sa.text("DELETE FROM attempt"))
    assert snapshot(raw) == before


def test_inserting_is_still_allowed(ledger: Ledger, raw: sa.Engine) -> None:
    before = snapshot(raw)
    event = ledger.detect("pay.webhook", key="evt_2")
    after = snapshot(raw)
    assert after["event_detected"][: len(before["event_detected"])] == before["event_detected"]
    assert after["event_detected"][-1][0] == event.id
