"""A failure ledger survives the failures it records (SPEC 3): whatever a handler raises is one recorded
failed attempt, on both backends, and no outcome of a group costs another its record."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from conftest import FakeClock

from failure_aware import Ledger, State
from failure_aware.domain import validation
from failure_aware.domain.errors import StorageError
from failure_aware.domain.outcomes import HandlerFailure, Succeeded
from failure_aware.domain.records import AttemptResult, Event
from failure_aware.events import recording
from failure_aware.events.claims import ClaimOutcome
from failure_aware.worker import Worker

TEN_MB = 10 * 1024 * 1024


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("my __str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("and so is my __repr__")


def poison(event: Event) -> None:
    kind = event.payload["kind"]
    if kind == "surrogate":
        raise OSError("cannot open caf\udce9.txt")  # a file name from os.listdir
    if kind == "nul":
        raise ValueError("bad\x00byte")
    if kind == "huge":
        raise RuntimeError("x" * TEN_MB)
    if kind == "unprintable":
        raise Unprintable()
    if kind == "exit":
        raise SystemExit(3)
    if kind == "escape":
        raise ValueError("\x1b[31mRED\x1b[0m \x9b31m")


KINDS = ("surrogate", "nul", "huge", "unprintable", "exit", "escape", "fine")


def run_until_done(ledger: Ledger) -> int:
    """Run the worker until nothing is due; a handler's SystemExit stops a run (after recording), so
    start again, as a supervisor would. Returns how many runs a SystemExit ended."""
    exits = 0
    for _ in range(len(KINDS) + 1):
        try:
            Worker(ledger, poison).run(once=True)
            return exits
        except SystemExit:
            exits += 1
    raise AssertionError("the worker kept stopping")


def test_a_worker_records_every_poison_outcome(ledger: Ledger) -> None:
    ids = {kind: ledger.detect("pay.hook", {"kind": kind}).id for kind in KINDS}
    assert run_until_done(ledger) == 1  # SystemExit stopped one run, once its attempt was recorded
    events = {kind: ledger.get(event_id) for kind, event_id in ids.items()}
    assert all(e.attempt_count == 1 for e in events.values())
    assert not [e for e in events.values() if e.state is State.IN_FLIGHT]
    assert events["fine"].state is State.SUCCEEDED
    failed = {kind: e for kind, e in events.items() if kind != "fine"}
    assert all(e.state is State.FAILED for e in failed.values())
    # What the failure produced is kept, made storable the same way on both backends.
    assert failed["surrogate"].last_error == "cannot open caf\ufffd.txt"
    assert failed["nul"].last_error == "bad\ufffdbyte"
    huge = failed["huge"].last_error or ""
    assert len(huge) == validation.MAX_ERROR_CHARS and huge.startswith("xxx") and "[cut:" in huge
    assert (failed["unprintable"].last_error_type, failed["unprintable"].last_error) == (
        "Unprintable", "<unprintable Unprintable>")
    assert (failed["exit"].last_error_type, failed["exit"].last_error) == ("SystemExit", "3")
    assert failed["escape"].last_error == "\x1b[31mRED\x1b[0m \x9b31m"  # stored unchanged
    shown = ledger.show(ids["surrogate"]).attempts[0]
    assert shown.traceback and "poison" in shown.traceback and 'raise OSError("cannot open' in shown.traceback
    assert len(shown.traceback.encode("utf-8")) <= validation.MAX_TRACEBACK_BYTES
    assert shown.duration_seconds is not None and shown.duration_seconds >= 0
    report = ledger.verify()
    assert report.ok, report.problems


def test_run_records_system_exit_then_raises_it(ledger: Ledger) -> None:
    event = ledger.detect("pay.hook", {"kind": "exit"})
    with pytest.raises(SystemExit):
        ledger.run(event.id, poison)
    assert ledger.get(event.id).state is State.FAILED
    assert ledger.verify().ok


def test_a_huge_traceback_keeps_its_last_frames(ledger: Ledger) -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise RuntimeError("at the bottom")
        deep(n - 1)

    event = ledger.detect("pay.hook")
    result = ledger.run(event.id, lambda ev: deep(200))
    tb = result.attempt.traceback or ""
    assert tb.endswith("RuntimeError: at the bottom\n") and len(tb.encode()) <= validation.MAX_TRACEBACK_BYTES


def test_handler_failure_says_permanent_retry_after_and_detail(ledger: Ledger, clock: FakeClock) -> None:
    slow, gone, fine, bad = (ledger.detect("pay.hook", key=k).id for k in ("slow", "gone", "fine", "bad"))
    later = ledger.run(slow, _raises(HandlerFailure("busy", error_type="HTTP503", retry_after=120,
                                                    detail={"status": 503})))
    assert later.state is State.FAILED and later.next_retry_at == clock.now + timedelta(seconds=120)
    assert (later.attempt.error_type, later.attempt.detail) == ("HTTP503", {"status": 503})
    dead = ledger.run(gone, _raises(HandlerFailure("gone", error_type="HTTP410", permanent=True)))
    assert dead.state is State.DEAD and "permanent" in dead.reason
    ok = ledger.run(fine, lambda ev: Succeeded(detail={"status": 200}))
    assert ok.state is State.SUCCEEDED and ok.attempt.detail == {"status": 200}
    # A handler that says something out of bounds fails, saying so; it never crashes the runner.
    wrong = ledger.run(bad, _raises(HandlerFailure("no", retry_after=-1)))
    assert wrong.state is State.FAILED and wrong.attempt.error_type == "InvalidHandlerOutcome"
    assert "retry_after" in (wrong.attempt.error or "")
    assert ledger.show(slow).attempts[0].detail == {"status": 503}
    assert ledger.verify().ok


def _raises(error: BaseException) -> Any:
    def handler(event: Event) -> None:
        raise error

    return handler


def test_one_outcome_the_database_refuses_costs_the_others_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [ledger.detect("pay.hook", key=f"k{n}").id for n in range(3)]
    held = ledger.claim_due(limit=3)
    real = recording.write_settlements

    def refusing(conn: Any, settlements: Any) -> None:  # a row the database refuses (as PG did NUL)
        if any(s.attempt_row["error_type"] == "Poison" for s in settlements):
            raise StorageError("the database refused a row")
        real(conn, settlements)

    monkeypatch.setattr(recording, "write_settlements", refusing)
    outcomes = [ClaimOutcome(held[0], True), ClaimOutcome(held[1], False, error_type="Poison", error="p"),
                ClaimOutcome(held[2], False, error_type="TimeoutError", error="t")]
    first, refused, third = ledger.finish_many(outcomes)
    assert isinstance(first, AttemptResult) and isinstance(third, AttemptResult)
    assert isinstance(refused, StorageError)
    assert [ledger.get(i).state for i in ids] == [State.SUCCEEDED, State.IN_FLIGHT, State.FAILED]
    # The worker's recording (handler_outcome.record) then closes the refused one as a plain failure.
    from failure_aware.events import handler_outcome

    [closed] = handler_outcome.record(ledger.finish_many, [outcomes[1]])
    assert isinstance(closed, AttemptResult) and closed.attempt.error_type == "UnrecordableOutcome"
    assert "Poison: p" in (closed.attempt.error or "")


def test_a_report_records_failure_text_as_every_path_does(ledger: Ledger) -> None:
    event = ledger.detect("pay.hook")
    result = ledger.report(event.id, False, error_type="Bad\x00Type", error="caf\udce9 " + "y" * 100_000)
    assert result.attempt.error_type == "Bad\ufffdType"
    assert (result.attempt.error or "").startswith("caf\ufffd y") and len(result.attempt.error or "") == (
        validation.MAX_ERROR_CHARS)
    stored = ledger.show(event.id).attempts[0]
    assert dataclasses.replace(stored, traceback=None) == dataclasses.replace(result.attempt, traceback=None)
