"""Writes sent together (``storage.batch``: a worker step's statements), on SQLite and PostgreSQL: a guard
that does not match still rolls everything back, and a connection lost while a batch is sent is the
database being unavailable (the worker's retry), never a driver error; the next transaction reconnects."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from failure_aware import DatabaseUnavailable, InvalidTransition, Ledger, State
from failure_aware.domain.policy import RetryPolicy
from failure_aware.domain.states import Step
from failure_aware.events import claims, recording
from failure_aware.events.recording import Reported
from failure_aware.storage import batch
from failure_aware.storage.tables import event_state


def test_a_guard_that_does_not_match_when_the_batch_is_sent_rolls_everything_back(ledger: Ledger) -> None:
    event = ledger.detect("job.run")
    changed = "changed while its attempt was being recorded"
    with pytest.raises(InvalidTransition, match=changed), ledger.store.write() as conn, batch.batched(conn):
        now_us = ledger.store.now_us()
        row = recording.lock_state(conn, event.id)
        settlement = recording.decide(row, Reported(ok=True, at_us=now_us), step=Step.REPORT,
                                      policy=RetryPolicy(), actor="tester", now_us=now_us)
        # a foreign writer that got past the lock: the guarded UPDATE finds the row changed
        conn.execute(sa.update(event_state).where(event_state.c.event_id == event.id)
                     .values(state=State.FAILED))
        recording.write_settlements(conn, [settlement])
        assert ledger.get(event.id).attempt_count == 0  # queued, not sent yet (another connection)
    assert ledger.get(event.id).state is State.PENDING and not ledger.show(event.id).attempts
    assert ledger.verify().ok


def test_a_connection_lost_while_a_batch_is_sent_is_unavailability_and_nothing_lands(
    ledger: Ledger, backend: str, db_url: str
) -> None:
    event = ledger.detect("job.run")
    with pytest.raises(DatabaseUnavailable), ledger.store.write() as conn, batch.batched(conn):
        taken = claims.claim_due(conn, worker="w", lease_us=60_000_000, now_us=ledger.store.now_us(),
                                 limit=1)
        assert [c.event.id for c in taken] == [event.id]  # read; its writes still queued
        if backend == "postgresql":
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            other = sa.create_engine(db_url, poolclass=NullPool)
            with other.connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
            other.dispose()
        else:
            conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
    assert ledger.get(event.id).state is State.PENDING  # a new connection; nothing of the batch landed
    assert [c.event.id for c in ledger.claim_due(limit=1)] == [event.id]
    assert ledger.verify().ok
