"""Importing a database of the seed's v0.1-v0.3 schema (``import --legacy``), on SQLite and PostgreSQL.

Each test builds its own legacy file in tmp_path with the seed's DDL (the real one in ../shared is only for
trying by hand).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import Ledger, State, ValidationError
from failure_aware.interchange import legacy
from failure_aware.storage.tables import HISTORY_TABLES, event_state, state_count


@pytest.fixture
def clock() -> FakeClock:
    """A clock a month after the seed's rows: their times lie in the past, as a real import's do."""
    return FakeClock(datetime(2026, 2, 1, tzinfo=UTC))

V03_EVENTS = """
CREATE TABLE event_detected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    event_payload TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    sync_status TEXT NOT NULL DEFAULT 'PENDING',
    retry_count INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
, next_retry_at TEXT, event_note TEXT)
"""
V01_EVENTS = V03_EVENTS.replace(", next_retry_at TEXT, event_note TEXT", "")
OTHER_TABLES = """
CREATE TABLE failure_cluster (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL, window_start TEXT NOT NULL,
    window_end TEXT NOT NULL, event_count INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE domain_state (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER NOT NULL, summary TEXT NOT NULL,
    created_at TEXT NOT NULL, UNIQUE(event_id));
INSERT INTO failure_cluster (event_type, window_start, window_end, event_count, created_at) VALUES
('EVENT_DETECTED', '2026-01-02T04:00:00+00:00', '2026-01-02T05:00:00+00:00', 3, '2026-01-02T05:00:01');
"""
DETECTED = datetime(2026, 1, 2, 4, 45, 54, 971227, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()  # the seed wrote '+00:00'


def build_legacy(path: Path, rows: list[dict[str, Any]], *, version: str = "v0.3") -> Path:
    """A legacy database at ``path`` with ``rows`` in event_detected (ids from 1)."""
    conn = sqlite3.connect(path)
    conn.executescript((V03_EVENTS if version == "v0.3" else V01_EVENTS) + ";" + OTHER_TABLES)
    for given in rows:
        values = (
            given
            if version == "v0.3"
            else {k: v for k, v in given.items() if k not in ("next_retry_at", "event_note")}
        )
        conn.execute(
            f"INSERT INTO event_detected ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )
    conn.commit()
    conn.close()
    return path


def row(
    status: str,
    retries: int = 0,
    *,
    error: str | None = None,
    next_retry: datetime | None = None,
    note: str | None = None,
    event_type: str = "EVENT_DETECTED",
    payload: Any = None,
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_payload": json.dumps(
            {"message": "this event must survive failure"} if payload is None else payload
        ),
        "detected_at": iso(DETECTED),
        "sync_status": status,
        "retry_count": retries,
        "last_error": error,
        "next_retry_at": iso(next_retry) if next_retry else None,
        "event_note": note,
    }


SEED_LIKE = [
    row("SYNCED"),  # 1
    row(
        "SYNCED",
        2,
        error="Simulated external sync failure",
        next_retry=DETECTED + timedelta(minutes=6),
        note="Temporary auth outage during sync",
    ),  # 2
    row("FAILED", 3, error="Simulated external sync failure", next_retry=DETECTED + timedelta(hours=1)),  # 3
    row("FAILED", 0, error="boom"),  # 4: FAILED without retries or next_retry_at
    row("DEAD", 5, error="Max retries exceeded"),  # 5
    row("PENDING"),  # 6
    row("PENDING", 2, error="Simulated external sync failure"),  # 7: "failed, will retry"
]


def table_counts(ledger: Ledger) -> dict[str, int]:
    with ledger.store.read() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (*HISTORY_TABLES, event_state, state_count)
        }


def test_states_notes_and_attempts_come_over(ledger: Ledger, tmp_path: Path) -> None:
    path = build_legacy(tmp_path / "failure_aware.db", SEED_LIKE)
    report = ledger.import_legacy(path)
    assert (report.imported, report.skipped_existing, report.invalid) == (7, 0, ())
    assert (
        report.attempts == 1 + 3 + 3 + 1 + 5 + 0 + 2 and report.annotations == 1
    )  # a success each when SYNCED
    events = {e.key: e for e in ledger.events()}
    assert {key: e.state for key, e in events.items()} == {
        "legacy-1": State.SUCCEEDED,
        "legacy-2": State.SUCCEEDED,
        "legacy-3": State.FAILED,
        "legacy-4": State.FAILED,
        "legacy-5": State.DEAD,
        "legacy-6": State.PENDING,
        "legacy-7": State.FAILED,
    }
    assert all(e.event_type == "EVENT_DETECTED" and e.detected_at == DETECTED for e in events.values())
    assert events["legacy-1"].payload == {"message": "this event must survive failure"}

    synced = ledger.show(events["legacy-2"].id)
    assert [a.outcome for a in synced.attempts] == ["failed", "failed", "succeeded"]
    # the seed kept only the last error: the failure before it says its message was not kept
    assert [a.error for a in synced.attempts] == [legacy.NOT_KEPT, "Simulated external sync failure", None]
    assert synced.attempts[0].error_type == legacy.ERROR_TYPE and synced.attempts[0].fingerprint
    # no attempt times in the legacy schema: spread evenly up to its next_retry_at, the success on it
    assert synced.attempts[-1].at == DETECTED + timedelta(minutes=6)
    assert synced.attempts[0].at == DETECTED + timedelta(minutes=2)
    assert [(n.author, n.text) for n in synced.annotations] == [
        ("legacy", "Temporary auth outage during sync")
    ]
    assert all(t.actor == "legacy" for t in synced.transitions)

    failed = events["legacy-3"]
    assert failed.next_retry_at == DETECTED + timedelta(hours=1)  # the legacy column is kept
    assert ledger.show(failed.id).attempts[-1].at < failed.next_retry_at
    assert events["legacy-4"].attempt_count == 1  # FAILED means at least one failure
    # no legacy next_retry_at: the policy's (default: 10 s after the first failure, one minute in)
    assert events["legacy-4"].next_retry_at == DETECTED + timedelta(seconds=70)
    dead = ledger.show(events["legacy-5"].id)
    assert len(dead.attempts) == 5 and dead.transitions[-1].to_state is State.DEAD  # DEAD whatever the policy
    # the seed's generic final message belongs to the last attempt only, not to every synthesized one
    assert [a.error for a in dead.attempts] == [legacy.NOT_KEPT] * 4 + ["Max retries exceeded"]
    assert events["legacy-6"].attempt_count == 0
    assert events["legacy-7"].attempt_count == 2
    assert ledger.verify().ok


def test_reimport_skips_everything(ledger: Ledger, tmp_path: Path) -> None:
    path = build_legacy(tmp_path / "legacy.db", SEED_LIKE)
    ledger.import_legacy(path)
    before = table_counts(ledger)
    again = ledger.import_legacy(str(path))
    assert (again.imported, again.skipped_existing) == (0, len(SEED_LIKE))
    assert table_counts(ledger) == before


def test_older_schema_without_next_retry_or_note(ledger: Ledger, tmp_path: Path) -> None:
    path = build_legacy(tmp_path / "v01.db", SEED_LIKE, version="v0.1")
    report = ledger.import_legacy(path)
    assert report.imported == len(SEED_LIKE) and report.annotations == 0
    counts = Counter(e.state for e in ledger.events())
    assert counts == {State.SUCCEEDED: 2, State.FAILED: 3, State.DEAD: 1, State.PENDING: 1}
    attempts = ledger.show(next(e.id for e in ledger.events() if e.key == "legacy-2")).attempts
    assert [a.at - DETECTED for a in attempts] == [timedelta(minutes=m) for m in (1, 2, 3)]


def test_the_tables_left_behind_are_named_with_their_rows(tmp_path: Path) -> None:
    path = build_legacy(tmp_path / "legacy.db", SEED_LIKE)
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "odd ""name""" (x INTEGER)')
    conn.execute('INSERT INTO "odd ""name""" VALUES (1), (2)')
    conn.commit()
    conn.close()
    with legacy.open_legacy(path) as source:
        assert source.count() == len(SEED_LIKE)
        left = source.tables_left_behind()
    assert [(name, rows) for name, rows, _ in left] == [
        ("domain_state", 0), ("failure_cluster", 1), ('odd "name"', 2)
    ]  # event_detected is carried; SQLite's own sqlite_sequence is not a table of the seed
    assert "correlate" in {n: why for n, _, why in left}["failure_cluster"]


def test_the_legacy_file_is_only_read(ledger: Ledger, tmp_path: Path) -> None:
    path = build_legacy(tmp_path / "legacy.db", SEED_LIKE)
    before = path.read_bytes()
    path.chmod(0o444)
    ledger.import_legacy(path)
    assert path.read_bytes() == before


def test_a_bad_legacy_row_names_its_id(ledger: Ledger, tmp_path: Path) -> None:
    rows = [*SEED_LIKE, row("WEIRD"), row("SYNCED", payload=[1, 2])]
    path = build_legacy(tmp_path / "legacy.db", rows)
    with pytest.raises(ValidationError) as refused:
        ledger.import_legacy(path)
    message = str(refused.value)
    assert "legacy event 8: sync_status 'WEIRD'" in message and "legacy event 9: payload" in message
    assert ledger.events() == []
    report = ledger.import_legacy(path, skip_invalid=True)
    assert report.imported == len(SEED_LIKE) and [n for n, _ in report.invalid] == [8, 9]


@pytest.mark.parametrize("problem", ["missing", "text", "empty", "other-schema", "current", "columns"])
def test_not_a_legacy_database(ledger: Ledger, tmp_path: Path, problem: str) -> None:
    path = tmp_path / "not-legacy.db"
    expected = {
        "missing": "no such file",
        "text": "not a readable SQLite database",
        "empty": "no event_detected",
        "other-schema": "no event_detected",
        "current": "current schema",
        "columns": "lacks column(s)",
    }[problem]
    if problem == "text":
        path.write_text("just some text, not a database\n" * 100)
    elif problem == "empty":
        path.write_bytes(b"")
    elif problem == "other-schema":
        sqlite3.connect(path).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    elif problem == "current":
        Ledger(f"sqlite:///{path}").close()
    elif problem == "columns":
        sqlite3.connect(path).executescript(
            "CREATE TABLE event_detected (id INTEGER PRIMARY KEY, event_type TEXT)"
        )
    before = table_counts(ledger)
    with pytest.raises(ValidationError) as refused:
        ledger.import_legacy(path)
    assert expected in str(refused.value)
    assert table_counts(ledger) == before


def test_record_mapping_is_pure_and_deterministic() -> None:
    source = {**row("FAILED", 2, error="e", next_retry=DETECTED + timedelta(seconds=30)), "id": 42}
    record = legacy.record_from_row(source)
    assert record == legacy.record_from_row(dict(source))
    assert record["key"] == "legacy-42" and record["state"] == "FAILED"
    assert [a["at"] for a in record["attempts"]] == [
        "2026-01-02T04:46:04.971227Z",
        "2026-01-02T04:46:14.971227Z",
    ]
    assert record["next_retry_at"] == "2026-01-02T04:46:24.971227Z"
    naive = legacy.record_from_row({**source, "detected_at": "2026-01-02T04:45:54.971227"})
    assert naive["detected_at"] == record["detected_at"]  # legacy times without a zone are UTC
