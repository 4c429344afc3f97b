"""Bad input through the Python API: an error of our tree naming the problem, and nothing written.

Every check compares the row count of every table (history and derived) before and after the refused call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import (
    FailureAwareError,
    InvalidTransition,
    Ledger,
    NotFound,
    RetryTooEarly,
    SchemaError,
    StaleClaim,
    State,
    StorageError,
    ValidationError,
)
from failure_aware.config import Config
from failure_aware.domain.timeutil import format_time
from failure_aware.storage.tables import metadata

UNKNOWN = 999_999
MIB = 1024 * 1024


def row_counts(ledger: Ledger) -> dict[str, int]:
    with ledger.store.read() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def refused(ledger: Ledger, error: type[FailureAwareError], match: str, call: Callable[[], Any]) -> str:
    """``call`` raises ``error`` (exactly that class) with a message matching ``match``, writing nothing."""
    before = row_counts(ledger)
    with pytest.raises(FailureAwareError) as info:
        call()
    assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
    assert info.match(match)
    assert row_counts(ledger) == before, "a refused call wrote something"
    return str(info.value)


def never_called(event: Any) -> None:
    raise AssertionError("the handler must not run")


# -- unknown events --------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["report", "claim", "show", "get", "run", "bury", "revive", "annotate"])
def test_an_unknown_event_id_is_not_found(ledger: Ledger, call: str) -> None:
    ledger.detect("pay.webhook", key="evt_1")  # a database that is not empty
    calls: dict[str, Callable[[], Any]] = {
        "report": lambda: ledger.report(UNKNOWN, True),
        "claim": lambda: ledger.claim(UNKNOWN),
        "show": lambda: ledger.show(UNKNOWN),
        "get": lambda: ledger.get(UNKNOWN),
        "run": lambda: ledger.run(UNKNOWN, never_called),
        "bury": lambda: ledger.bury(UNKNOWN),
        "revive": lambda: ledger.revive(UNKNOWN),
        "annotate": lambda: ledger.annotate(UNKNOWN, "a note"),
    }
    refused(ledger, NotFound, f"no event with id {UNKNOWN}", calls[call])


@pytest.mark.parametrize("bad_id", [0, -1, "1", 1.0, True, None])
def test_a_malformed_event_id_is_refused(ledger: Ledger, bad_id: Any) -> None:
    refused(ledger, ValidationError, "event id must be a positive integer",
            lambda: ledger.report(bad_id, True))


# -- illegal transitions ---------------------------------------------------------------------------------
def test_report_on_a_succeeded_event_is_an_invalid_transition(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    ledger.report(event.id, True)
    for ok in (True, False):
        message = refused(ledger, InvalidTransition, "SUCCEEDED", lambda ok=ok: ledger.report(event.id, ok))
        assert f"event {event.id}" in message


def test_report_on_an_in_flight_event_is_an_invalid_transition(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    ledger.claim(event.id)
    refused(ledger, InvalidTransition, "IN_FLIGHT.*finished by its runner",
            lambda: ledger.report(event.id, True))


def test_a_dead_event_cannot_be_claimed_or_run(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    ledger.report(event.id, False, error_type="Boom", error="boom")
    ledger.bury(event.id, actor="ops")
    for force in (False, True):
        refused(ledger, InvalidTransition, "DEAD.*only PENDING or FAILED",
                lambda force=force: ledger.claim(event.id, force=force))
        refused(ledger, InvalidTransition, "DEAD", lambda force=force: ledger.run(event.id, never_called))


def test_bury_and_revive_from_the_wrong_state(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    refused(ledger, InvalidTransition, "only FAILED events can be buried", lambda: ledger.bury(event.id))
    refused(ledger, InvalidTransition, "only DEAD events can be revived", lambda: ledger.revive(event.id))


def test_finishing_with_a_stale_token_is_refused(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    old = ledger.claim(event.id, lease_seconds=60)
    clock.advance(61)
    assert [r.event_id for r in ledger.recover()] == [event.id]  # type: ignore[union-attr]
    clock.advance(3600)
    ledger.claim(event.id)  # someone else holds it now
    message = refused(ledger, StaleClaim, "no longer holds it", lambda: ledger.finish(old, True))
    assert f"event {event.id}" in message
    refused(ledger, ValidationError, "needs the Claim", lambda: ledger.finish("token", True))  # type: ignore[arg-type]


# -- retry timing ----------------------------------------------------------------------------------------
def test_retry_too_early_by_one_microsecond_then_accepted_on_time(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    failed = ledger.report(event.id, False, error_type="TimeoutError", error="timed out")
    due = failed.next_retry_at
    assert due == clock.now + timedelta(seconds=10)  # the default policy: 10 s after the first failure
    clock.now = due - timedelta(microseconds=1)
    for call in (lambda: ledger.report(event.id, True), lambda: ledger.claim(event.id),
                 lambda: ledger.run(event.id, never_called)):
        message = refused(ledger, RetryTooEarly, "may be retried from", call)
        assert format_time(due) in message and "force" in message
    with pytest.raises(RetryTooEarly) as info:
        ledger.report(event.id, True)
    assert info.value.next_retry_at == due
    clock.now = due
    assert ledger.report(event.id, True).state is State.SUCCEEDED


def test_an_explicit_time_before_next_retry_is_too_early(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    due = ledger.report(event.id, False, error_type="E", error="e").next_retry_at
    assert due is not None
    clock.advance(3600)  # now is late enough; the reported time is not
    refused(ledger, RetryTooEarly, format_time(due) or "",
            lambda: ledger.report(event.id, True, at=due - timedelta(microseconds=1)))
    assert ledger.report(event.id, True, at=due).attempt.at == due


# -- times, payloads, names ------------------------------------------------------------------------------
def test_naive_datetimes_are_refused(ledger: Ledger) -> None:
    naive = datetime(2026, 1, 2, 4, 0, 0)
    refused(ledger, ValidationError, "no time zone", lambda: ledger.detect("pay.webhook", at=naive))
    event = ledger.detect("pay.webhook")
    refused(ledger, ValidationError, "no time zone", lambda: ledger.report(event.id, True, at=naive))
    refused(ledger, ValidationError, "expected a datetime",
            lambda: ledger.report(event.id, True, at="2026-01-02"))  # type: ignore[arg-type]


def test_an_attempt_before_its_event_is_refused(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    refused(ledger, ValidationError, "before",
            lambda: ledger.report(event.id, True, at=clock.now - timedelta(seconds=1)))


def test_payload_size_limit(ledger: Ledger) -> None:
    exactly = {"x": "a" * (MIB - len('{"x":""}'))}
    assert ledger.detect("pay.webhook", exactly).payload == exactly  # 1 MiB serialized is allowed
    over = {"x": "a" * (MIB - len('{"x":""}') + 1)}
    refused(ledger, ValidationError, f"{MIB + 1} bytes serialized; the limit is {MIB}",
            lambda: ledger.detect("pay.webhook", over))
    multibyte = {"x": "é" * (MIB // 2)}  # counted in UTF-8 bytes, not characters
    refused(ledger, ValidationError, "the limit is", lambda: ledger.detect("pay.webhook", multibyte))


def test_a_custom_payload_limit(db_url: str, clock: FakeClock) -> None:
    with Ledger(db_url, config=Config(), clock=clock, max_payload_bytes=100) as ledger:
        ledger.detect("pay.webhook", {"x": "a" * 92})  # 100 bytes
        refused(ledger, ValidationError, "101 bytes serialized; the limit is 100",
                lambda: ledger.detect("pay.webhook", {"x": "a" * 93}))


@pytest.mark.parametrize(
    ("payload", "match"),
    [([1, 2], "JSON object, got list"), ("text", "JSON object, got str"), (12, "JSON object, got int"),
     ({"x": {1, 2}}, "not JSON-serializable"), ({"x": math.nan}, "not JSON-serializable")],
)
def test_a_payload_that_is_not_a_json_object(ledger: Ledger, payload: Any, match: str) -> None:
    refused(ledger, ValidationError, match, lambda: ledger.detect("pay.webhook", payload))


@pytest.mark.parametrize("event_type", ["", "x" * 201, "has space", "tab\there", "émoji", None, 12])
def test_a_bad_event_type(ledger: Ledger, event_type: Any) -> None:
    refused(ledger, ValidationError, "event_type .* is invalid", lambda: ledger.detect(event_type))


def test_the_longest_event_type_is_fine(ledger: Ledger) -> None:
    assert ledger.detect("x" * 200).event_type == "x" * 200


def test_outcome_fields_are_checked(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    refused(ledger, ValidationError, "succeeded attempt takes no error",
            lambda: ledger.report(event.id, True, error="but it broke"))
    refused(ledger, ValidationError, "ok must be True or False", lambda: ledger.report(event.id, "yes"))  # type: ignore[arg-type]
    refused(ledger, ValidationError, "error_type", lambda: ledger.report(event.id, False, error_type=12))  # type: ignore[arg-type]
    # An error type is what a failure produced: never refused; a blank one is recorded as none.
    assert ledger.report(event.id, False, error_type=" ").attempt.error_type is None


# -- databases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["nosuchdb://x", "not a url at all", "mysql://root@localhost/db"])
def test_a_wrong_url_is_a_storage_error(url: str) -> None:
    with pytest.raises(StorageError) as info:
        Ledger(url, config=Config())
    assert "sqlite:///" in str(info.value)  # says what to use instead


def test_an_unreachable_postgresql_fails_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"127\.0\.0\.1"):
        Ledger("postgresql://postgres@127.0.0.1:1/none", config=Config())
    assert time.monotonic() - started < 15


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StorageError, match="not a database"):
        Ledger(f"sqlite:///{junk}", config=Config())
    assert junk.read_text().startswith("these are my notes")


def test_a_database_of_another_schema(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE attempt (id INTEGER PRIMARY KEY, what TEXT)"))
    with pytest.raises(SchemaError, match="not a failure-aware database"):
        Ledger(db_url, config=Config())
    assert sa.inspect(engine).get_table_names() == ["attempt"]
    engine.dispose()
