"""Riding out database outages: which errors are retried (``storage.faults``) and for how long
(``dbwait.DatabaseWait``), without a database: a fake clock and sleep."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import DBAPIError

from failure_aware import DatabaseUnavailable, StorageError
from failure_aware.storage.dbwait import MAX_PAUSE_SECONDS, DatabaseWait
from failure_aware.storage.faults import is_transient


def wrapped(orig: BaseException, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)  # type: ignore[arg-type]


def test_which_driver_errors_mean_the_database_was_unavailable() -> None:
    import psycopg

    assert is_transient(wrapped(psycopg.OperationalError("connection refused")))
    assert is_transient(wrapped(psycopg.errors.AdminShutdown("terminating connection")))
    assert is_transient(wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")))
    assert is_transient(wrapped(psycopg.errors.SerializationFailure("could not serialize")))
    assert is_transient(wrapped(ValueError("anything"), invalidated=True))
    assert not is_transient(wrapped(psycopg.errors.UndefinedTable("relation does not exist")))
    assert not is_transient(wrapped(psycopg.errors.UniqueViolation("duplicate key")))
    assert is_transient(wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_transient(wrapped(sqlite3.OperationalError("no such table: attempt")))
    assert not is_transient(wrapped(sqlite3.IntegrityError("UNIQUE constraint failed")))


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_an_outage_is_retried_with_growing_pauses_and_reported_once_each_way() -> None:
    time, said = FakeTime(), []
    calls: list[bool] = []

    def step(after_fault: bool) -> str:
        calls.append(after_fault)
        if len(calls) <= 4:
            raise DatabaseUnavailable("connection refused")
        return "done"

    wait = DatabaseWait(60, said.append, sleep=time.sleep, clock=lambda: time.now)
    assert wait.call(step) == "done"
    assert calls == [False, True, True, True, True]  # repeats know they are repeats
    assert time.slept == [0.1, 0.2, 0.4, 0.8]
    assert len(said) == 2 and "retrying for up to 1m" in said[0] and said[1].startswith("database back")


def test_giving_up_is_bounded_in_time_and_count_and_says_so() -> None:
    time = FakeTime()
    calls = []

    def down(after_fault: bool) -> None:
        calls.append(after_fault)
        raise DatabaseUnavailable("connection refused")

    wait = DatabaseWait(30, sleep=time.sleep, clock=lambda: time.now)
    with pytest.raises(DatabaseUnavailable, match=r"gave up: the database was unavailable for 30s .*refused"):
        wait.call(down)
    assert time.now == 30 and max(time.slept) <= MAX_PAUSE_SECONDS
    assert len(calls) <= 30 / MAX_PAUSE_SECONDS + 6


def test_other_errors_are_raised_at_once() -> None:
    time = FakeTime()

    def broken(after_fault: bool) -> None:
        raise StorageError("no such table: attempt")

    with pytest.raises(StorageError, match="no such table"):
        DatabaseWait(30, sleep=time.sleep, clock=lambda: time.now).call(broken)
    assert time.slept == []
