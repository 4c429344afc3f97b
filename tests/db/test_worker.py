"""The foreground worker (``failure_aware.worker``) and handler loading, on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import DatabaseUnavailable, Event, Ledger, Outcome, State, ValidationError
from failure_aware.cli.handlers import load_handler
from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy
from failure_aware.domain.records import Claim
from failure_aware.events.claims import ClaimOutcome, Cycle
from failure_aware.storage.tables import event_state
from failure_aware.worker import AttemptReport, Worker


def detect_many(ledger: Ledger, n: int, event_type: str = "job.run", **payload: object) -> list[int]:
    return [ledger.detect(event_type, dict(payload)).id for _ in range(n)]


def in_flight_now(ledger: Ledger) -> int:
    """IN_FLIGHT events, counted in one statement (one moment)."""
    with ledger.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(event_state)
                                .where(event_state.c.state == State.IN_FLIGHT)).scalar_one())


def attempts_of(ledger: Ledger, event_id: int) -> list[tuple[int, Outcome]]:
    return [(a.number, a.outcome) for a in ledger.show(event_id).attempts]


def test_once_drains_what_is_due_and_counts_outcomes(ledger: Ledger, clock: FakeClock) -> None:
    good = detect_many(ledger, 5, "a.ok")
    bad = detect_many(ledger, 2, "b.flaky", fail=True)
    seen: list[AttemptReport] = []

    def handler(event: Event) -> None:
        if event.payload.get("fail"):
            raise ConnectionError(f"refused [{event.id}]")

    summary = Worker(ledger, handler).run(once=True, on_result=seen.append)

    assert (summary.succeeded, summary.failed, summary.dead, summary.lost, summary.skipped) == (5, 2, 0, 0, 0)
    assert summary.attempts == 7 and summary.by_type == {"a.ok": 5, "b.flaky": 2} and not summary.stopped
    assert sorted(r.claim.event.id for r in seen) == sorted(good + bad)
    assert all(ledger.get(i).state is State.SUCCEEDED and attempts_of(ledger, i) == [(1, Outcome.SUCCEEDED)]
               for i in good)
    for i in bad:
        event = ledger.get(i)
        assert event.state is State.FAILED and event.last_error_type == "ConnectionError"
        assert event.last_error == f"refused [{i}]"
    # The failed ones are not due before their next_retry_at: a second pass runs nothing ...
    assert Worker(ledger, handler).run(once=True).attempts == 0
    # ... and runs exactly them once it is.
    clock.advance(11)
    again = Worker(ledger, handler).run(once=True, on_result=seen.append)
    assert again.failed == 2 and {r.claim.event.id for r in seen[-2:]} == set(bad)
    assert all(attempts_of(ledger, i) == [(1, Outcome.FAILED), (2, Outcome.FAILED)] for i in bad)


def test_handler_exceptions_are_recorded_never_raised(ledger: Ledger) -> None:
    ledger.config = Config(policies=PolicySet(default=RetryPolicy(non_retryable=frozenset({"KeyError"}))))
    retryable, fatal = detect_many(ledger, 1, "x.retry")[0], detect_many(ledger, 1, "x.fatal")[0]

    def handler(event: Event) -> None:
        raise (KeyError("no such account") if event.event_type == "x.fatal" else ValueError())

    reports: list[AttemptReport] = []
    summary = Worker(ledger, handler, event_type=None).run(once=True, on_result=reports.append)

    assert (summary.failed, summary.dead, summary.succeeded) == (1, 1, 0)
    outcomes = {r.claim.event.id: (r.outcome, r.result.state if r.result else None) for r in reports}
    assert outcomes == {retryable: ("failed", State.FAILED), fatal: ("failed", State.DEAD)}
    failed = ledger.show(retryable).attempts[0]
    assert failed.error_type == "ValueError" and failed.error == "ValueError()"  # no message: its repr
    assert ledger.show(fatal).attempts[0].error == "'no such account'"


def test_event_type_and_limit_restrict_the_run(ledger: Ledger) -> None:
    typed = detect_many(ledger, 4, "only.this")
    other = detect_many(ledger, 3, "not.that")
    ran: list[int] = []
    summary = Worker(ledger, lambda e: ran.append(e.id), event_type="only.this", limit=3).run(once=True)
    assert summary.attempts == 3 and len(ran) == 3 and set(ran) <= set(typed)
    assert all(ledger.get(i).state is State.PENDING for i in other)
    assert [ledger.get(i).state for i in typed].count(State.PENDING) == 1


def test_stop_finishes_the_attempt_in_hand_and_leaves_no_claim(ledger: Ledger) -> None:
    ids = detect_many(ledger, 6)
    calls: list[int] = []
    worker: Worker

    def handler(event: Event) -> None:
        calls.append(event.id)
        worker.stop()  # as Ctrl-C would, while this attempt is running

    worker = Worker(ledger, handler)
    summary = worker.run(once=True)

    assert calls == [ids[0]] and summary.succeeded == 1 and summary.stopped
    assert ledger.get(ids[0]).state is State.SUCCEEDED
    assert all(ledger.get(i).state is State.PENDING for i in ids[1:])  # not claimed, not left IN_FLIGHT


def test_stop_claims_nothing_more_and_the_running_handler_finishes(ledger: Ledger) -> None:
    ids = detect_many(ledger, 8)
    calls: list[int] = []
    worker: Worker

    def handler(event: Event) -> None:
        calls.append(event.id)
        if len(calls) == 2:
            worker.stop()

    worker = Worker(ledger, handler)
    summary = worker.run(once=True)

    assert calls == ids[:2] and summary.succeeded == 2  # the attempt running finished; nothing more claimed
    assert [ledger.get(i).state for i in ids] == [State.SUCCEEDED] * 2 + [State.PENDING] * 6


def test_a_lost_claim_is_reported_not_recorded(ledger: Ledger, clock: FakeClock) -> None:
    [event_id] = detect_many(ledger, 1)

    def handler(event: Event) -> None:
        clock.advance(301)  # the attempt outlives its lease and someone runs `recover`
        ledger.recover()

    reports: list[AttemptReport] = []
    summary = Worker(ledger, handler).run(once=True, on_result=reports.append)

    assert summary.lost == 1 and summary.attempts == 0
    assert reports[0].outcome == "lost" and "no longer holds it" in (reports[0].problem or "")
    assert attempts_of(ledger, event_id) == [(1, Outcome.ABANDONED)]  # the late success wrote nothing
    assert ledger.get(event_id).state is State.FAILED


def test_threads_share_the_work_without_running_anything_twice(ledger: Ledger) -> None:
    ids = detect_many(ledger, 40)
    lock = threading.Lock()
    ran: list[int] = []

    def handler(event: Event) -> None:
        with lock:
            ran.append(event.id)
        time.sleep(0.002)

    summary = Worker(ledger, handler, concurrency=4, worker_id="pool").run(once=True)

    assert summary.succeeded == 40 and sorted(ran) == ids
    assert {a.actor for i in ids for a in ledger.show(i).attempts} == {"pool"}
    assert all(len(ledger.show(i).attempts) == 1 for i in ids)


def test_a_foreground_loop_waits_for_work_until_stopped(ledger: Ledger) -> None:
    ran: list[int] = []
    idle = threading.Event()
    worker = Worker(ledger, lambda e: ran.append(e.id), idle_sleep_seconds=0.05)
    summaries = []
    thread = threading.Thread(target=lambda: summaries.append(worker.run(on_idle=idle.set)))
    thread.start()
    try:
        assert idle.wait(10), "the loop never reported being idle"
        ids = detect_many(ledger, 3)
        deadline = time.monotonic() + 10
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive() and sorted(ran) == ids
    assert summaries[0].succeeded == 3 and summaries[0].stopped


def test_a_database_or_fatal_error_stops_every_thread_and_is_raised(ledger: Ledger) -> None:
    detect_many(ledger, 6)

    class Fatal(BaseException):
        pass

    def handler(event: Event) -> None:
        raise Fatal("the process must stop")

    with pytest.raises(Fatal):
        Worker(ledger, handler, concurrency=2).run(once=True)
    # Each attempt that raised it was recorded first (a failure is data); none of them is left IN_FLIGHT.
    claimed = [e for e in ledger.events(limit=10) if e.attempt_count]
    assert claimed and all(e.state is State.FAILED and e.last_error_type == "Fatal" for e in claimed)


def test_retry_due_should_stop_leaves_no_claim_behind(ledger: Ledger) -> None:
    ids = detect_many(ledger, 5)
    results = ledger.retry_due(lambda e: None, should_stop=lambda: True)
    assert results == [] and all(ledger.get(i).state is State.PENDING for i in ids)
    done: list[int] = []
    results = ledger.retry_due(lambda e: None, on_result=lambda r: done.append(r.event_id),
                               should_stop=lambda: len(done) >= 1)
    # The first outcome was written with the second claim (one transaction): that claim in hand still ran.
    assert [r.event_id for r in results] == done == ids[:2]
    assert [ledger.get(i).state for i in ids] == [State.SUCCEEDED] * 2 + [State.PENDING] * 3


# -- one transaction per step, claims only for free slots -----------------------------------------------
class CycleSpy:
    """Wraps ``ledger.cycle``: per call, the outcomes written and the claims asked for; the claims taken."""

    def __init__(self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int]] = []
        self.claims: dict[int, Claim] = {}
        cycle = ledger.cycle

        def spy(outcomes: list[ClaimOutcome] = (), **kwargs: Any) -> Cycle:  # type: ignore[assignment]
            self.calls.append((len(outcomes), kwargs.get("claim", 0)))
            done = cycle(outcomes, **kwargs)
            self.claims.update((c.event.id, c) for c in done.claims)
            return done

        monkeypatch.setattr(ledger, "cycle", spy)


def test_each_outcome_is_written_with_the_next_claim_each_with_its_time(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = detect_many(ledger, 4)
    spy = CycleSpy(ledger, monkeypatch)
    started = clock.now
    held: list[int] = []

    def handler(event: Event) -> None:
        clock.advance(1)  # each attempt ends a second after the previous one
        held.append(in_flight_now(ledger))

    summary = Worker(ledger, handler).run(once=True)

    assert summary.succeeded == 4 and held == [1, 1, 1, 1]  # one claim at a time: the one running
    assert spy.calls == [(0, 1), (1, 1), (1, 1), (1, 1), (1, 1)]  # outcome n and claim n+1 together
    ends = [started + timedelta(seconds=n) for n in range(1, 5)]
    assert [ledger.show(i).attempts[0].at for i in ids] == ends
    assert ledger.verify().ok


def test_concurrency_n_never_holds_more_than_n_claims(ledger: Ledger) -> None:
    detect_many(ledger, 24)
    lock = threading.Lock()
    in_flight: list[int] = []

    def handler(event: Event) -> None:
        with lock:
            in_flight.append(in_flight_now(ledger))
        time.sleep(0.01)

    summary = Worker(ledger, handler, concurrency=3).run(once=True)
    assert summary.succeeded == 24 and max(in_flight) <= 3 and len(in_flight) == 24


def test_a_claim_lost_meanwhile_is_reported_alone(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = detect_many(ledger, 3)
    spy = CycleSpy(ledger, monkeypatch)

    def handler(event: Event) -> None:
        if event.id == second:  # meanwhile, this very claim is finished elsewhere
            ledger.finish(spy.claims[second], False, error_type="Elsewhere", error="finished by another")

    reports: list[AttemptReport] = []
    summary = Worker(ledger, handler).run(once=True, on_result=reports.append)

    assert (summary.succeeded, summary.lost) == (2, 1)
    assert [(r.claim.event.id, r.outcome) for r in reports] == [
        (first, "succeeded"), (second, "lost"), (third, "succeeded")]
    assert "no longer holds it (now FAILED)" in (reports[1].problem or "")
    assert [a.error_type for a in ledger.show(second).attempts] == ["Elsewhere"]  # recorded once, not twice
    assert ledger.get(third).state is State.SUCCEEDED and ledger.verify().ok


def test_a_slow_handler_keeps_its_claim_by_renewing_the_lease(db_url: str) -> None:
    with Ledger(db_url, config=Config()) as real:  # the real clock: leases run out in real time
        [event_id] = detect_many(real, 1)
        recovered: list[object] = []

        def handler(event: Event) -> None:
            for _ in range(4):  # 1.2 s: twice the lease
                time.sleep(0.3)
                recovered.extend(real.recover())  # an operator's `recover`: must find nothing stuck

        summary = Worker(real, handler, lease_seconds=0.6).run(once=True)
        assert recovered == [] and summary.succeeded == 1
        assert attempts_of(real, event_id) == [(1, Outcome.SUCCEEDED)]


# -- database faults ---------------------------------------------------------------------------------------
def test_the_worker_rides_out_an_outage_and_writes_the_outcomes_it_held(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = detect_many(ledger, 3)
    cycle = ledger.cycle
    failures = iter([False, True, True, False, True])  # the second step fails twice, the fourth once

    def flaky(*args: Any, **kwargs: Any) -> Cycle:
        if next(failures, False):
            raise DatabaseUnavailable("server closed the connection unexpectedly")
        return cycle(*args, **kwargs)

    monkeypatch.setattr(ledger, "cycle", flaky)
    said: list[str] = []
    summary = Worker(ledger, lambda e: None).run(once=True, on_db_fault=said.append)

    assert summary.succeeded == 3 and summary.lost == 0
    assert all(attempts_of(ledger, i) == [(1, Outcome.SUCCEEDED)] for i in ids)
    assert len(said) == 4 and "retrying for up to 5m" in said[0] and said[1].startswith("database back")


def test_a_commit_that_broke_midway_is_recognised_not_repeated(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = detect_many(ledger, 3)
    cycle = ledger.cycle
    calls = iter(range(100))

    def lands_then_breaks(*args: Any, **kwargs: Any) -> Cycle:
        done = cycle(*args, **kwargs)
        if next(calls) % 2 == 0 and not kwargs.get("after_fault"):
            raise DatabaseUnavailable("connection lost during COMMIT")  # it had committed all the same
        return done

    monkeypatch.setattr(ledger, "cycle", lands_then_breaks)
    ran: list[int] = []
    summary = Worker(ledger, lambda e: ran.append(e.id)).run(once=True)

    assert sorted(ran) == ids and summary.succeeded == 3 and summary.lost == 0
    assert all(attempts_of(ledger, i) == [(1, Outcome.SUCCEEDED)] for i in ids)  # no abandoned claim
    assert ledger.verify().ok


def test_the_worker_gives_up_after_max_db_wait_counting_what_it_held(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    detect_many(ledger, 2)
    cycle = ledger.cycle
    steps = iter(range(100))

    def down_after_first(*args: Any, **kwargs: Any) -> Cycle:
        if next(steps) > 0:
            raise DatabaseUnavailable("connection refused")
        return cycle(*args, **kwargs)

    monkeypatch.setattr(ledger, "cycle", down_after_first)
    worker = Worker(ledger, lambda e: None, max_db_wait_seconds=0.4)
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"gave up: the database was unavailable .*refused"):
        worker.run(once=True)
    assert time.monotonic() - began < 3
    assert worker.summary.unrecorded == 1 and worker.summary.attempts == 0


def test_a_fatal_error_still_records_the_outcomes_known_before_it(ledger: Ledger) -> None:
    first, second, third = detect_many(ledger, 3)

    class Fatal(BaseException):
        pass

    def handler(event: Event) -> None:
        if event.id == third:
            raise Fatal("the process must stop")

    reports: list[AttemptReport] = []
    with pytest.raises(Fatal):
        Worker(ledger, handler).run(once=True, on_result=reports.append)
    # The attempt that raised it is recorded too (a failure is data): nothing is left IN_FLIGHT.
    assert [r.claim.event.id for r in reports] == [first, second, third]
    assert [ledger.get(i).state for i in (first, second, third)] == [State.SUCCEEDED, State.SUCCEEDED,
                                                                     State.FAILED]
    assert ledger.get(third).last_error_type == "Fatal"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 65}, "concurrency"),
    ({"lease_seconds": 0}, "lease_seconds"),
    ({"lease_seconds": 8 * 86400}, "lease_seconds"),
    ({"idle_sleep_seconds": -1}, "idle_sleep_seconds"),
    ({"max_db_wait_seconds": 0}, "max_db_wait_seconds"),
    ({"max_db_wait_seconds": float("nan")}, "max_db_wait_seconds"),
    ({"limit": 0}, "limit"),
    ({"event_type": "bad type!"}, "event_type"),
])
def test_worker_refuses_bad_arguments(ledger: Ledger, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Worker(ledger, lambda e: None, **kwargs)  # type: ignore[arg-type]


def test_worker_refuses_a_handler_that_is_not_callable(ledger: Ledger) -> None:
    with pytest.raises(ValidationError, match="callable"):
        Worker(ledger, 42)  # type: ignore[arg-type]


# -- load_handler --------------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A working directory holding a package with a unique name (imports are cached per name)."""
    name = f"proj_{uuid.uuid4().hex[:10]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(
        "class Sender:\n"
        "    def send(self, event):\n        return ('sent', event)\n"
        "sender = Sender()\n"
        "def deliver(event):\n    return event\n"
        "LIMIT = 3\n"
    )
    (package / "broken.py").write_text("raise RuntimeError('config file missing')\n")
    (package / "needs.py").write_text(f"import {name}_absent_dependency\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path, name


def test_load_handler_finds_functions_and_attributes_in_the_cwd(project: tuple[Path, str]) -> None:
    _, name = project
    deliver = load_handler(f"{name}.jobs:deliver")
    assert deliver("x") == "x"
    assert load_handler(f"{name}.jobs:sender.send")("y") == ("sent", "y")


@pytest.mark.parametrize("spec", ["", "jobs", "jobs:", ":deliver", "a b:c", "jobs:run:x", "jobs.:f", "1x:f"])
def test_load_handler_refuses_a_malformed_spec(spec: str) -> None:
    with pytest.raises(ValidationError, match="must be written module:function"):
        load_handler(spec)


def test_load_handler_names_what_is_missing_or_wrong(project: tuple[Path, str]) -> None:
    _, name = project
    with pytest.raises(ValidationError, match=f"no module named '{name}.nothere'"):
        load_handler(f"{name}.nothere:deliver")
    with pytest.raises(ValidationError, match=f"'{name}.jobs' has no attribute 'missing'"):
        load_handler(f"{name}.jobs:missing")
    with pytest.raises(ValidationError, match="has no attribute 'nope'"):
        load_handler(f"{name}.jobs:sender.nope")
    with pytest.raises(ValidationError, match="is a int, not a callable"):
        load_handler(f"{name}.jobs:LIMIT")
    with pytest.raises(ValidationError, match="RuntimeError: config file missing"):
        load_handler(f"{name}.broken:run")
    with pytest.raises(ValidationError, match=f"needs module '{name}_absent_dependency'"):
        load_handler(f"{name}.needs:run")
