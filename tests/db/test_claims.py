"""Running work: fenced claims, recovery of expired leases, ``run``, ``claim_due`` and forced attempts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock

from failure_aware import (
    AttemptResult,
    ClaimOutcome,  # public: Ledger.finish_many takes it
    Event,
    Ledger,
    NotFound,
    Outcome,
    StaleClaim,
    State,
    ValidationError,
)
from failure_aware.storage.tables import event_state, metadata


def row_counts(ledger: Ledger) -> dict[str, int]:
    with ledger.store.read() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def fail_once(ledger: Ledger, event_id: int) -> None:
    ledger.report(event_id, False, error_type="TimeoutError", error="timed out")


# -- fencing ---------------------------------------------------------------------------------------------
def test_a_recovered_claim_cannot_finish(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    claim = ledger.claim(event.id, worker="w1", lease_seconds=30)
    assert claim.lease_expires_at == claim.claimed_at + timedelta(seconds=30)
    assert claim.attempt_number == 1 and claim.worker == "w1"
    clock.advance(31)
    (recovered,) = ledger.recover()
    assert recovered.state is State.FAILED  # type: ignore[union-attr]
    before = row_counts(ledger)
    with pytest.raises(StaleClaim, match=f"event {event.id}.*not recorded"):
        ledger.finish(claim, True)
    assert row_counts(ledger) == before
    detail = ledger.show(event.id)
    assert [a.outcome for a in detail.attempts] == [Outcome.ABANDONED]
    abandoned = detail.attempts[0]
    assert abandoned.error_type == "LeaseExpired" and "w1" in (abandoned.error or "")
    assert abandoned.started_at == claim.claimed_at and abandoned.at == clock.now


def test_a_claim_taken_again_fences_out_the_old_one(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    old = ledger.claim(event.id, worker="w1", lease_seconds=30)
    clock.advance(31)
    ledger.recover()
    clock.advance(3600)  # past next_retry_at
    new = ledger.claim(event.id, worker="w2")
    assert new.token != old.token and new.attempt_number == 2
    with pytest.raises(StaleClaim, match="claimed by w2"):
        ledger.finish(old, False, error_type="E", error="late")
    result = ledger.finish(new, True)
    assert result.state is State.SUCCEEDED and result.attempt.actor == "w2"
    with pytest.raises(StaleClaim, match="now SUCCEEDED"):
        ledger.finish(new, True)  # finishing twice is stale too


def test_an_expired_lease_still_finishes_until_recovered(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    claim = ledger.claim(event.id, lease_seconds=30)
    clock.advance(300)  # nobody ran recover: the claim still holds the event
    result = ledger.finish(claim, True)
    assert result.state is State.SUCCEEDED and result.attempt.at == clock.now


def test_recover_takes_only_expired_leases(ledger: Ledger, clock: FakeClock) -> None:
    short = ledger.detect("pay.webhook", key="short")
    long = ledger.detect("pay.webhook", key="long")
    ledger.claim(short.id, lease_seconds=10)
    ledger.claim(long.id, lease_seconds=100)
    clock.advance(10)  # exactly at the lease's end: not yet expired
    assert ledger.recover() == []
    clock.advance(microseconds=1)
    assert ledger.recover(dry_run=True) == [ledger.get(short.id)]
    assert ledger.get(short.id).state is State.IN_FLIGHT  # the dry run wrote nothing
    assert [r.event_id for r in ledger.recover(actor="ops")] == [short.id]  # type: ignore[union-attr]
    assert ledger.get(long.id).state is State.IN_FLIGHT
    assert ledger.show(short.id).transitions[-1].actor == "ops"


# -- run ---------------------------------------------------------------------------------------------------
class UpstreamDown(Exception):
    pass


def test_run_records_a_handler_exception_as_a_failed_attempt(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook", {"amount": 12})
    seen: list[Event] = []

    def handler(ev: Event) -> None:
        seen.append(ev)
        raise UpstreamDown("upstream 503 after 30s")

    result = ledger.run(event.id, handler, worker="w1")  # does not raise
    assert [e.id for e in seen] == [event.id] and seen[0].payload == {"amount": 12}
    assert seen[0].state is State.IN_FLIGHT
    assert result.state is State.FAILED and result.next_retry_at is not None
    attempt = ledger.show(event.id).attempts[-1]
    assert (attempt.outcome, attempt.error_type, attempt.error) == (
        Outcome.FAILED, "UpstreamDown", "upstream 503 after 30s"
    )
    assert attempt.actor == "w1" and attempt.started_at is not None and attempt.fingerprint
    assert ledger.get(event.id).last_error == "upstream 503 after 30s"


def test_run_names_an_exception_without_a_message(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")

    def handler(ev: Event) -> None:
        raise UpstreamDown

    result = ledger.run(event.id, handler)
    assert result.attempt.error_type == "UpstreamDown" and result.attempt.error == "UpstreamDown()"


def test_run_records_success_whatever_the_handler_returns(ledger: Ledger) -> None:
    for value in (None, False, 0, "done"):
        event = ledger.detect("pay.webhook")
        result = ledger.run(event.id, lambda ev, value=value: value)
        assert result.state is State.SUCCEEDED and result.attempt.error is None


def test_an_interrupt_is_recorded_then_raised(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")

    def handler(ev: Event) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # it still stops the program ...
        ledger.run(event.id, handler, lease_seconds=10)
    after = ledger.get(event.id)  # ... once the attempt it cut short is recorded: no claim left behind
    assert after.state is State.FAILED and after.last_error_type == "KeyboardInterrupt"
    clock.advance(11)
    assert ledger.recover() == []


# -- claim_due ---------------------------------------------------------------------------------------------
def test_claim_due_takes_due_events_in_due_order(ledger: Ledger, clock: FakeClock) -> None:
    first = ledger.detect("pay.webhook", key="first")  # due from its detection
    clock.advance(1)
    retried = ledger.detect("pay.webhook", key="retried")
    fail_once(ledger, retried.id)  # due 10 s after this failure
    clock.advance(1)
    later = ledger.detect("job.sync", key="later")
    clock.advance(1)
    busy = ledger.detect("pay.webhook", key="busy")
    ledger.claim(busy.id)  # IN_FLIGHT: never due
    clock.advance(1)
    done = ledger.detect("pay.webhook", key="done")
    ledger.report(done.id, True)  # SUCCEEDED: never due
    assert [c.event.id for c in ledger.claim_due(limit=10, event_type="nothing.here")] == []
    # The failure is not due yet: only the PENDING ones, oldest first, of the asked type.
    assert [c.event.id for c in ledger.claim_due(limit=10, event_type="pay.webhook")] == [first.id]
    clock.advance(60)
    taken = ledger.claim_due(limit=1)
    assert [c.event.id for c in taken] == [later.id]  # due at its detection, before the retry's time
    assert taken[0].event.state is State.IN_FLIGHT and taken[0].attempt_number == 1
    taken = ledger.claim_due(limit=5, worker="w7")
    assert [c.event.id for c in taken] == [retried.id]
    assert taken[0].attempt_number == 2 and taken[0].worker == "w7" and not taken[0].forced
    assert ledger.claim_due(limit=5) == []
    assert ledger.verify().ok


def test_claim_due_breaks_ties_by_id(ledger: Ledger) -> None:
    ids = [ledger.detect("pay.webhook", key=f"k{n}").id for n in range(5)]  # all detected at the same time
    assert [c.event.id for c in ledger.claim_due(limit=3)] == ids[:3]
    assert [c.event.id for c in ledger.claim_due(limit=3)] == ids[3:]


def test_retry_due_runs_what_is_due_up_to_the_limit(ledger: Ledger, clock: FakeClock) -> None:
    ids = [ledger.detect("pay.webhook", key=f"k{n}").id for n in range(4)]
    ran: list[int] = []

    def handler(ev: Event) -> None:
        ran.append(ev.id)
        if ev.id == ids[0]:
            raise UpstreamDown("still down")

    results = ledger.retry_due(handler, limit=3)
    assert ran == ids[:3] and [r.state for r in results] == [State.FAILED, State.SUCCEEDED, State.SUCCEEDED]
    assert [r.event_id for r in ledger.retry_due(handler)] == [ids[3]]  # the failure is not due yet
    clock.advance(10)
    assert [r.event_id for r in ledger.retry_due(handler)] == [ids[0]]


# -- forced attempts ---------------------------------------------------------------------------------------
def test_a_forced_report_is_recorded_as_forced_with_its_actor(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    fail_once(ledger, event.id)
    result = ledger.report(event.id, True, force=True, actor="alice")
    assert result.attempt.forced and result.attempt.actor == "alice"
    last = ledger.show(event.id).transitions[-1]
    assert last.actor == "alice" and "forced" in last.reason


def test_a_forced_claim_is_recorded_as_forced_with_its_worker(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    fail_once(ledger, event.id)
    claim = ledger.claim(event.id, force=True, worker="w9")
    assert claim.forced
    result = ledger.finish(claim, False, error_type="E", error="again")
    assert result.attempt.forced and result.attempt.actor == "w9"
    transitions = ledger.show(event.id).transitions
    assert "forced" in transitions[-2].reason and transitions[-2].actor == "w9"  # the claim
    assert "forced" in transitions[-1].reason  # the outcome


def test_force_on_a_due_event_is_not_recorded_as_forced(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    assert not ledger.report(event.id, False, error_type="E", error="e", force=True).attempt.forced  # PENDING
    clock.advance(10)  # exactly at next_retry_at: due, nothing to force
    assert not ledger.claim(event.id, force=True).forced


def test_attempts_by_run_carry_their_start_time(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    started = clock.now

    def slow(ev: Any) -> None:
        clock.advance(5)

    result = ledger.run(event.id, slow)
    assert result.attempt.started_at == started and result.attempt.at == started + timedelta(seconds=5)


def test_a_finish_never_goes_before_the_previous_attempt(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.webhook")
    ahead = clock.now + timedelta(minutes=4)  # reported from a host whose clock runs ahead (within the skew)
    ledger.report(event.id, False, error_type="E", error="e", at=ahead)
    claim = ledger.claim(event.id, force=True)
    assert ledger.finish(claim, True, at=clock.now).attempt.at == ahead
    later = ledger.detect("pay.webhook", at=ahead)  # detected "in the future", then run now
    assert ledger.run(later.id, lambda ev: None).attempt.at == ahead
    assert ledger.verify().ok


# -- finish_many (a worker's group commit) ---------------------------------------------------------------
def test_finish_many_records_a_group_and_refuses_only_stale_claims(ledger: Ledger, clock: FakeClock) -> None:
    ids = [ledger.detect("pay.webhook", key=f"k{n}").id for n in range(4)]
    held = ledger.claim_due(limit=4, worker="w1", lease_seconds=30)
    assert [c.event.id for c in held] == ids
    stale = held[1]
    with ledger.store.write() as conn:  # someone else finished it meanwhile
        conn.execute(sa.update(event_state).where(event_state.c.event_id == stale.event.id)
                     .values(claim_token="taken-over"))
    done_at = clock.now
    clock.advance(5)  # the group is written later than the outcomes were known
    results = ledger.finish_many([
        ClaimOutcome(held[0], True, at=done_at),
        ClaimOutcome(stale, True),
        ClaimOutcome(held[2], False, error_type="TimeoutError", error="timed out", at=done_at),
        ClaimOutcome(held[3], True),
    ])

    assert isinstance(results[1], StaleClaim) and f"event {ids[1]}" in str(results[1])
    recorded = [r for r in results if isinstance(r, AttemptResult)]
    assert [r.event_id for r in recorded] == [ids[0], ids[2], ids[3]]
    assert [r.state for r in recorded] == [State.SUCCEEDED, State.FAILED, State.SUCCEEDED]
    assert [r.attempt.at for r in recorded] == [done_at, done_at, clock.now]  # each keeps its own time
    assert all(r.attempt.actor == "w1" and r.attempt.started_at == held[0].claimed_at for r in recorded)
    assert ledger.get(ids[1]).state is State.IN_FLIGHT and ledger.show(ids[1]).attempts == ()
    assert [(a.number, a.outcome) for a in ledger.show(ids[2]).attempts] == [(1, Outcome.FAILED)]
    assert ledger.state_counts()[State.SUCCEEDED] == 2


def test_finish_many_refuses_a_second_outcome_of_one_claim(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    claim = ledger.claim(event.id)
    first, second = ledger.finish_many([ClaimOutcome(claim, True), ClaimOutcome(claim, False, error="e")])
    assert isinstance(first, AttemptResult) and first.state is State.SUCCEEDED
    assert isinstance(second, StaleClaim) and "now SUCCEEDED" in str(second)
    assert [a.outcome for a in ledger.show(event.id).attempts] == [Outcome.SUCCEEDED]
    assert ledger.finish_many([]) == []
    assert ledger.verify().ok


def test_finish_many_judges_each_outcome_on_its_own(ledger: Ledger) -> None:
    ids = [ledger.detect("pay.webhook", key=f"k{n}").id for n in range(2)]
    held = ledger.claim_due(limit=2)
    before = row_counts(ledger)
    with pytest.raises(ValidationError, match="ClaimOutcome"):
        ledger.finish_many([held[0]])  # type: ignore[list-item]
    assert row_counts(ledger) == before
    # One invalid outcome is refused alone (its ValidationError in its place); the other is recorded.
    good, bad = ledger.finish_many([ClaimOutcome(held[0], True), ClaimOutcome(held[1], True, error="not ok")])
    assert isinstance(good, AttemptResult) and good.state is State.SUCCEEDED
    assert isinstance(bad, ValidationError) and "succeeded attempt takes no error" in str(bad)
    assert [ledger.get(i).state for i in ids] == [State.SUCCEEDED, State.IN_FLIGHT]


def test_finish_of_a_claim_on_an_unknown_event_is_not_found(ledger: Ledger) -> None:
    event = ledger.detect("pay.webhook")
    claim = ledger.claim(event.id)
    ghost = dataclasses.replace(claim, event=dataclasses.replace(claim.event, id=event.id + 1000))
    with pytest.raises(NotFound, match=f"no event with id {event.id + 1000}"):
        ledger.finish(ghost, True)
    [missing, result] = ledger.finish_many([ClaimOutcome(ghost, True), ClaimOutcome(claim, True)])
    assert isinstance(missing, NotFound) and isinstance(result, AttemptResult)
