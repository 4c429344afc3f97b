"""``verify`` finds every kind of disagreement it promises to, and nothing on a healthy ledger.

Each test builds a small ledger through the API (so it is consistent), damages one thing with raw SQL and
checks that ``verify`` names it. History tampering needs the immutability triggers dropped first, which is
itself something ``verify`` reports.
"""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.diagnostics.replay import replay
from failure_aware.diagnostics.verify import verify
from failure_aware.domain.policy import PolicySet, RetryPolicy


def populate(ledger: Ledger, clock: FakeClock) -> dict[str, int]:
    """One event in each interesting situation; returns their ids by name."""
    ids = {}
    ids["failed"] = ledger.detect("pay.webhook", key="failed").id
    ledger.report(ids["failed"], False, error_type="TimeoutError", error="timed out after 30s")
    ids["in_flight"] = ledger.detect("pay.webhook", key="in_flight").id
    ledger.claim(ids["in_flight"], worker="w1")
    ids["succeeded"] = ledger.detect("pay.webhook", key="succeeded").id
    ledger.report(ids["succeeded"], True)
    ids["revived"] = ledger.detect("job.sync", key="revived").id
    for _ in range(6):
        clock.advance(1)
        ledger.report(ids["revived"], False, error_type="IOError", error="disk full", force=True)
    ledger.revive(ids["revived"], actor="ops")
    clock.advance(1)
    ledger.report(ids["revived"], False, error_type="IOError", error="disk full again")
    ids["back"] = ledger.detect("job.sync", key="back").id  # revived and not tried since: PENDING
    ledger.report(ids["back"], False, error_type="Fatal", error="bad record", force=True)
    for _ in range(5):
        clock.advance(1)
        ledger.report(ids["back"], False, error_type="Fatal", error="bad record", force=True)
    clock.advance(1)
    ledger.revive(ids["back"], actor="ops")
    ids["buried"] = ledger.detect("job.sync", key="buried").id
    ledger.report(ids["buried"], False, error_type="IOError", error="disk full")
    ledger.bury(ids["buried"], actor="ops")
    ids["pending"] = ledger.detect("job.sync", key="pending").id
    return ids


def execute(ledger: Ledger, sql: str, **params: Any) -> None:
    with ledger.store.write() as conn:
        conn.execute(sa.text(sql), params)


def drop_trigger(ledger: Ledger, name: str, table: str) -> None:
    if ledger.store.dialect == "sqlite":
        execute(ledger, f"DROP TRIGGER {name}")
    else:
        execute(ledger, f"DROP TRIGGER {name} ON {table}")


def problems_of(ledger: Ledger) -> tuple[str, ...]:
    report = ledger.verify()
    assert report.ok == (not report.problems)
    return report.problems


def test_a_consistent_ledger_verifies_clean(ledger: Ledger, clock: FakeClock, db_url: str) -> None:
    populate(ledger, clock)
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.checked_events == 7
    assert report.notes == ()
    assert report.as_dict()["ok"] is True and report.as_dict()["checked_events"] == 7
    with Ledger(db_url, readonly=True, config=Config(), clock=clock) as readonly:
        assert readonly.verify().ok


def test_an_empty_ledger_verifies_clean(ledger: Ledger) -> None:
    report = ledger.verify()
    assert report.ok and report.checked_events == 0


PROJECTION_DAMAGE = [
    ("failed", "UPDATE event_state SET state = 'SUCCEEDED' WHERE event_id = :id", "event_state.state"),
    ("succeeded", "UPDATE event_state SET attempt_count = 5 WHERE event_id = :id", "attempt_count"),
    ("revived", "UPDATE event_state SET budget_failures = 7 WHERE event_id = :id", "budget_failures"),
    ("failed", "UPDATE event_state SET last_error = 'x' WHERE event_id = :id", "last_error"),
    ("failed", "UPDATE event_state SET last_attempt_at_us = 1 WHERE event_id = :id", "last_attempt_at"),
    ("failed", "UPDATE event_state SET next_retry_at_us = NULL, due_at_us = NULL WHERE event_id = :id",
     "FAILED without next_retry_at"),
    ("failed", "UPDATE event_state SET due_at_us = due_at_us + 1 WHERE event_id = :id", "due_at"),
    ("failed", "UPDATE event_state SET next_retry_at_us = 0, due_at_us = 0 WHERE event_id = :id",
     "not within 0 s to 365 days"),
    ("succeeded", "UPDATE event_state SET next_retry_at_us = 5 WHERE event_id = :id", "next_retry_at is set"),
    ("pending", "UPDATE event_state SET due_at_us = NULL WHERE event_id = :id", "due_at"),
    ("back", "UPDATE event_state SET due_at_us = detected_at_us WHERE event_id = :id", "due_at"),
    ("back", "UPDATE event_state SET budget_failures = 6 WHERE event_id = :id", "budget_failures"),
    ("buried", "UPDATE event_state SET due_at_us = 5 WHERE event_id = :id", "due_at is set"),
    ("in_flight", "UPDATE event_state SET claim_token = NULL WHERE event_id = :id", "without claim_token"),
    ("in_flight", "UPDATE event_state SET claimed_by = 'w2' WHERE event_id = :id", "claimed by w2"),
    ("succeeded", "UPDATE event_state SET claimed_by = 'w1' WHERE event_id = :id", "claim fields are set"),
    ("pending", "DELETE FROM event_state WHERE event_id = :id", "no event_state row"),
]


@pytest.mark.parametrize(("victim", "sql", "expected"), PROJECTION_DAMAGE)
def test_a_damaged_projection_is_named(
    ledger: Ledger, clock: FakeClock, victim: str, sql: str, expected: str
) -> None:
    ids = populate(ledger, clock)
    execute(ledger, sql, id=ids[victim])
    problems = problems_of(ledger)
    assert any(f"event {ids[victim]}:" in p and expected in p for p in problems), problems
    others = [p for p in problems if p.startswith("event ") and not p.startswith(f"event {ids[victim]}:")]
    assert others == [], "only the damaged event may be named"


def test_damaged_counters_are_named(ledger: Ledger, clock: FakeClock) -> None:
    populate(ledger, clock)
    execute(ledger, "UPDATE state_count SET n = n + 2 WHERE event_type = 'job.sync' AND state = 'PENDING'")
    assert problems_of(ledger) == ("state_count says 4 job.sync events are PENDING; event_state has 2",)


def test_a_changed_state_shows_in_the_counters_too(ledger: Ledger, clock: FakeClock) -> None:
    ids = populate(ledger, clock)
    execute(ledger, "UPDATE event_state SET state = 'DEAD' WHERE event_id = :id", id=ids["pending"])
    problems = problems_of(ledger)
    assert any("state_count says 2 job.sync events are PENDING; event_state has 1" in p for p in problems)


def test_a_missing_trigger_is_named(ledger: Ledger) -> None:
    drop_trigger(ledger, "attempt_no_update", "attempt")
    assert problems_of(ledger) == (  # by name, and by trying an UPDATE that is then rolled back
        "immutability trigger attempt_no_update is missing",
        "history table attempt accepts UPDATE: its append-only trigger is missing, disabled or does not "
        "refuse (tried in a transaction rolled back)",
    )


def test_rewritten_history_is_named(ledger: Ledger, clock: FakeClock) -> None:
    ids = populate(ledger, clock)
    for name in ("transition_no_delete", "attempt_no_update"):
        drop_trigger(ledger, name, name.split("_no_")[0])
    # Remove the revive: the chain then goes DEAD -> FAILED by a report, which is not a legal step.
    execute(ledger, "DELETE FROM transition WHERE event_id = :id AND from_state = 'DEAD'", id=ids["revived"])
    execute(ledger, "UPDATE attempt SET number = 9 WHERE event_id = :id AND number = 1", id=ids["failed"])
    problems = problems_of(ledger)
    assert any(f"event {ids['revived']}: transition" in p and "does not start from" in p for p in problems)
    assert any(f"event {ids['failed']}: attempt numbers are [9]" in p for p in problems), problems
    assert sum("immutability trigger" in p for p in problems) == 2


def test_attempts_out_of_time_order_are_named(ledger: Ledger, clock: FakeClock) -> None:
    ids = populate(ledger, clock)
    drop_trigger(ledger, "attempt_no_update", "attempt")
    execute(ledger, "UPDATE attempt SET at_us = at_us + 100000000 WHERE event_id = :id AND number = 1",
            id=ids["revived"])
    problems = problems_of(ledger)
    revived = f"event {ids['revived']}: attempt 2 at"
    assert any(p.startswith(revived) and "earlier than attempt 1" in p for p in problems), problems


def test_rows_of_events_never_detected_are_named(ledger: Ledger, clock: FakeClock, db_url: str) -> None:
    populate(ledger, clock)
    row = ("job.sync", "PENDING", 1, 0, 0, 1, 1, False)
    insert = (
        "INSERT INTO event_state (event_id, event_type, state, detected_at_us, attempt_count,"
        " budget_failures, due_at_us, updated_at_us, claim_forced)"
        " VALUES (999, :t, :s, :d, :a, :b, :due, :u, :f)"
    )
    params = dict(zip(("t", "s", "d", "a", "b", "due", "u", "f"), row, strict=True))
    if ledger.store.dialect == "sqlite":  # a plain sqlite3 connection does not enforce foreign keys
        raw = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        with raw:
            raw.execute(insert, params)
        raw.close()
    else:
        with ledger.store.write() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))  # skip the FK triggers
            conn.execute(sa.text(insert), params)
    problems = problems_of(ledger)
    assert "event_state has rows for event 999, never detected" in problems


def test_chunked_streaming_finds_the_same(ledger: Ledger, clock: FakeClock) -> None:
    ids = populate(ledger, clock)
    for n in range(7):
        ledger.detect("bulk", key=f"b{n}")
    execute(ledger, "UPDATE event_state SET attempt_count = 3 WHERE event_id IN (:a, :b)",
            a=ids["failed"], b=ids["pending"])
    policies = ledger.config.policies
    with ledger.store.read() as conn:
        whole = verify(conn, policies)
        for size in (1, 2, 5):
            chunked = verify(conn, policies, batch_size=size)
            assert chunked == whole
    assert whole.checked_events == 14 and len(whole.problems) == 2


def test_problems_are_capped(ledger: Ledger, clock: FakeClock) -> None:
    for n in range(5):
        ledger.detect("bulk", key=f"b{n}")
    execute(ledger, "UPDATE event_state SET attempt_count = 3")
    with ledger.store.read() as conn:
        report = verify(conn, ledger.config.policies, max_problems=2)
    assert report.problems[-1] == "... and 3 more problems" and len(report.problems) == 3


def test_a_changed_retry_policy_is_a_note_not_a_problem(
    ledger: Ledger, clock: FakeClock, db_url: str
) -> None:
    ids = populate(ledger, clock)
    slower = Config(policies=PolicySet(default=RetryPolicy(base_seconds=20)))
    with Ledger(db_url, readonly=True, config=slower, clock=clock) as other:
        report = other.verify()
    assert report.ok, report.problems
    assert any(f"event {ids['failed']}:" in n and "current retry policy gives" in n for n in report.notes)
    assert any(f"event {ids['revived']}:" in n for n in report.notes)


def test_damaged_clusters_are_named(ledger: Ledger, clock: FakeClock) -> None:
    for n in range(3):
        event = ledger.detect("pay.webhook", key=f"c{n}")
        clock.advance(1)
        ledger.report(event.id, False, error_type="TimeoutError", error="upstream timed out after 30s")
    ledger.correlate()
    assert ledger.clusters(), "the failures above make a cluster"
    assert ledger.verify().ok
    execute(ledger, "UPDATE failure_cluster SET failure_count = failure_count + 1")
    problems = problems_of(ledger)
    assert any("failure_count" in p and "correlate --rebuild" in p for p in problems), problems


# -- the replay itself, on hand-made histories (no database) ------------------------------------------
def _row(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


EVENT = _row(id=1, event_type="t", detected_at_us=100)
DETECTED = _row(id=1, at_us=100, from_state=None, to_state="PENDING", actor="system", attempt_number=None)


def _attempt(number: int, at_us: int, outcome: str) -> SimpleNamespace:
    error = None if outcome == "succeeded" else "boom"
    return _row(number=number, at_us=at_us, outcome=outcome, error_type=error, error=error, event_type="t")


def _step(tid: int, at_us: int, source: str, target: str, number: int | None) -> SimpleNamespace:
    return _row(id=tid, at_us=at_us, from_state=source, to_state=target, actor="w", attempt_number=number)


def test_replay_of_a_legal_history() -> None:
    history = [DETECTED, _step(2, 200, "PENDING", "IN_FLIGHT", None), _step(3, 300, "IN_FLIGHT", "FAILED", 1),
               _step(4, 400, "FAILED", "DEAD", None), _step(5, 500, "DEAD", "PENDING", None)]
    replayed = replay(EVENT, history, [_attempt(1, 300, "abandoned")])
    assert replayed.ok and replayed.problems == []
    assert (replayed.state, replayed.entered_at_us, replayed.budget_failures) == ("PENDING", 500, 0)


@pytest.mark.parametrize(
    ("history", "attempts", "expected"),
    [
        ([], [], "no transitions"),
        ([_step(1, 100, "PENDING", "IN_FLIGHT", None)], [], "expected (new) -> PENDING"),
        ([DETECTED, _step(2, 300, "PENDING", "FAILED", 1)], [_attempt(1, 300, "abandoned")],
         "abandoned attempt of an event that was not claimed"),
        ([DETECTED, _step(2, 300, "PENDING", "SUCCEEDED", 1)], [_attempt(1, 300, "failed")],
         "does not match the attempt's outcome"),
        ([DETECTED, _step(2, 300, "PENDING", "FAILED", 1)], [_attempt(1, 299, "failed")],
         "its attempt is at"),
        ([DETECTED, _step(2, 300, "PENDING", "FAILED", 2)], [_attempt(1, 300, "failed")],
         "expected attempt 1"),
        ([DETECTED, _step(2, 300, "PENDING", "DEAD", None)], [], "not a legal claim, bury or revive"),
        ([DETECTED, _step(2, 300, "PENDING", "IN_FLIGHT", 1)], [_attempt(1, 300, "failed")],
         "not a legal outcome"),
        ([DETECTED, _step(2, 300, "PENDING", "LOST", None)], [], "unknown state"),
        ([DETECTED], [_attempt(1, 300, "failed")], "1 attempts but 0 transitions"),
    ],
)
def test_replay_names_an_illegal_history(history: list[Any], attempts: list[Any], expected: str) -> None:
    replayed = replay(EVENT, history, attempts)
    assert not replayed.ok
    assert any(expected in p for p in replayed.problems), replayed.problems
