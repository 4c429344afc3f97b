"""A real Ledger driven by random steps against a small in-memory model of SPEC sections 3 and 4.

The model predicts, for every step, the state each event ends in, its attempt count and ``next_retry_at``,
and whether the call must raise (and which error). After every step the database must agree with it,
history may only have grown (what was there is a prefix of what is there now; nothing at all on an
error), and ``verify`` must find nothing wrong (checked every few steps and at the end).

The retry policies are written out here on purpose (not computed with ``failure_aware.domain.policy``), so the
model is an independent reference: the default policy (6 attempts, 10 s * 3 ** (n - 1), at most 1 h) and a
strict override for ``job.strict`` (2 attempts, ``Fatal`` is non-retryable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, drop_database, make_database, require_postgres
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from failure_aware import (
    Claim,
    InvalidTransition,
    Ledger,
    NotFound,
    RetryTooEarly,
    StaleClaim,
    State,
)
from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy
from failure_aware.domain.timeutil import to_us
from failure_aware.storage.tables import HISTORY_TABLES

TYPES = ("pay.webhook", "job.strict")
KEYS = ("k1", "k2", "k3", None)  # None: a generated key, so always a new event
CONFIG = Config(
    policies=PolicySet(overrides={"job.strict": RetryPolicy(max_attempts=2, non_retryable={"Fatal"})})
)
LEASE_SECONDS = 60.0
UNKNOWN_IDS = st.integers(min_value=1_000_000, max_value=1_000_005)
ERROR_TYPES = st.sampled_from(["TimeoutError", "Fatal"])
OK = st.integers(0, 3).map(lambda n: n == 0)  # mostly failures: they are what has states to explore
P, IN, S, F, D = State.PENDING, State.IN_FLIGHT, State.SUCCEEDED, State.FAILED, State.DEAD


class HandlerBoom(Exception):
    """What the test handler raises."""


def max_attempts(event_type: str) -> int:
    return 2 if event_type == "job.strict" else 6


def delay_seconds(failure_number: int) -> float:
    return min(3600.0, 10.0 * 3 ** (failure_number - 1))


@dataclass
class ModelEvent:
    """What the model believes about one event."""

    event_type: str
    state: State
    due_at: datetime | None
    attempts: int = 0
    budget: int = 0
    next_retry: datetime | None = None
    token: str | None = None
    lease_until: datetime | None = None


class LedgerMachine(RuleBasedStateMachine):
    """Set ``backend`` and ``tmp_factory`` on the class before running it."""

    backend = "sqlite"
    tmp_factory: pytest.TempPathFactory

    events = Bundle("events")
    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.url, self.token = make_database(self.backend, self.tmp_factory)
        self.clock = FakeClock()
        self.ledger = Ledger(self.url, config=CONFIG, clock=self.clock)
        self.model: dict[int, ModelEvent] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.live: dict[int, Claim] = {}  # the claim that holds each IN_FLIGHT event
        self.seen = self.history()
        self.steps = 0

    # -- helpers -------------------------------------------------------------------------------------
    def history(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every history table, in id order."""
        with self.ledger.store.read() as conn:
            return {
                table.name: [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]
                for table in HISTORY_TABLES
            }

    def expect_error(self, error: type[Exception], call: Any) -> None:
        """``call`` must raise exactly ``error`` and write nothing."""
        with pytest.raises(error) as info:
            call()
        assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
        event(f"refused with {error.__name__}")  # --hypothesis-show-statistics: is every error reached?
        assert self.history() == self.seen, f"{error.__name__} was raised but history changed"

    def start_error(self, event_id: int, force: bool) -> type[Exception] | None:
        """The error a claim or report must raise at this moment, or None when it may start an attempt."""
        ev = self.model.get(event_id)
        if ev is None:
            return NotFound
        if ev.state not in (P, F):
            return InvalidTransition
        if ev.state is F and not force and self.clock.now < (ev.next_retry or self.clock.now):
            return RetryTooEarly
        return None

    def is_forced(self, ev: ModelEvent, force: bool) -> bool:
        return force and ev.state is F and ev.next_retry is not None and self.clock.now < ev.next_retry

    def settle(self, event_id: int, ok: bool, error_type: str | None, result: Any) -> None:
        """Apply an attempt's outcome to the model and check the ledger's result agrees."""
        ev = self.model[event_id]
        ev.attempts += 1
        self.live.pop(event_id, None)
        ev.token = ev.lease_until = None
        ev.next_retry = ev.due_at = None
        if ok:
            ev.state = S
        else:
            ev.budget += 1
            fatal = ev.event_type == "job.strict" and error_type == "Fatal"
            if fatal or ev.budget >= max_attempts(ev.event_type):
                ev.state = D
            else:
                ev.state = F
                ev.next_retry = ev.due_at = self.clock.now + timedelta(seconds=delay_seconds(ev.budget))
        event(f"attempt -> {ev.state}")
        assert result.event_id == event_id
        assert result.state is ev.state
        assert result.attempt.number == ev.attempts
        assert result.next_retry_at == ev.next_retry

    def take(self, event_id: int, claim: Claim, *, forced: bool) -> None:
        ev = self.model[event_id]
        assert claim.attempt_number == ev.attempts + 1
        assert claim.forced is forced
        ev.state, ev.token, ev.due_at, ev.next_retry = IN, claim.token, None, None
        self.live[event_id] = claim
        ev.lease_until = self.clock.now + timedelta(seconds=LEASE_SECONDS)

    # -- steps ---------------------------------------------------------------------------------------
    @initialize(target=events, event_types=st.lists(st.sampled_from(TYPES), min_size=2, max_size=4))
    def first_events(self, event_types: list[str]) -> Any:
        # Start with a few events: with one, most runs soon have nothing left but refusals to explore.
        return multiple(*(self.detect(event_type, None) for event_type in event_types))

    @rule(target=events, event_type=st.sampled_from(TYPES), key=st.sampled_from(KEYS))
    def detect(self, event_type: str, key: str | None) -> int:
        event = self.ledger.detect(event_type, {"n": len(self.model)}, key=key)
        known = self.keys.get((event_type, key)) if key is not None else None
        if known is not None:
            assert event.id == known, "detect of an existing (type, key) must return that event"
            assert self.history() == self.seen, "detect of an existing (type, key) must write nothing"
        else:
            assert event.id not in self.model and event.state is P
            self.model[event.id] = ModelEvent(event_type, P, due_at=self.clock.now)
            if key is not None:
                self.keys[(event_type, key)] = event.id
        return event.id

    @rule(target=claims, event_id=events, force=st.booleans())
    def claim(self, event_id: int, force: bool) -> Any:
        error = self.start_error(event_id, force)
        if error is not None:
            self.expect_error(error, lambda: self.ledger.claim(event_id, force=force))
            return multiple()
        forced = self.is_forced(self.model[event_id], force)
        claim = self.ledger.claim(event_id, force=force, lease_seconds=LEASE_SECONDS)
        self.take(event_id, claim, forced=forced)
        return claim

    @rule(target=claims, limit=st.integers(1, 3), event_type=st.sampled_from((*TYPES, None)))
    def claim_due(self, limit: int, event_type: str | None) -> Any:
        due = sorted(
            (ev.due_at, i) for i, ev in self.model.items()
            if ev.due_at is not None and ev.due_at <= self.clock.now and event_type in (None, ev.event_type)
        )
        taken = self.ledger.claim_due(limit=limit, event_type=event_type, lease_seconds=LEASE_SECONDS)
        assert [c.event.id for c in taken] == [i for _, i in due[:limit]], "claim_due: wrong events or order"
        if taken:
            event("claimed due events")
        for claim in taken:
            self.take(claim.event.id, claim, forced=False)
        return multiple(*taken)

    @rule(claim=claims, ok=OK, error_type=ERROR_TYPES)
    def finish(self, claim: Claim, ok: bool, error_type: str) -> None:
        ev = self.model[claim.event.id]
        kwargs: dict[str, Any] = {} if ok else {"error_type": error_type, "error": "it broke"}
        if ev.state is not IN or ev.token != claim.token:
            self.expect_error(StaleClaim, lambda: self.ledger.finish(claim, ok, **kwargs))
            return
        result = self.ledger.finish(claim, ok, **kwargs)
        self.settle(claim.event.id, ok, None if ok else error_type, result)

    @precondition(lambda self: bool(self.live))
    @rule(pick=st.integers(min_value=0, max_value=99), ok=OK, error_type=ERROR_TYPES)
    def finish_live(self, pick: int, ok: bool, error_type: str) -> None:
        """Finish a claim that still holds its event (drawing from ``claims`` mostly finds stale ones)."""
        self.finish(self.live[sorted(self.live)[pick % len(self.live)]], ok, error_type)

    @rule(event_id=events, ok=OK, error_type=ERROR_TYPES, force=st.booleans())
    def report(self, event_id: int, ok: bool, error_type: str, force: bool) -> None:
        kwargs: dict[str, Any] = {} if ok else {"error_type": error_type, "error": "it broke"}
        error = self.start_error(event_id, force)
        if error is not None:
            self.expect_error(error, lambda: self.ledger.report(event_id, ok, force=force, **kwargs))
            return
        forced = self.is_forced(self.model[event_id], force)
        result = self.ledger.report(event_id, ok, force=force, **kwargs)
        assert result.attempt.forced is forced
        self.settle(event_id, ok, None if ok else error_type, result)

    @rule(event_id=events, raises=OK.map(lambda ok: not ok), force=st.booleans())
    def run(self, event_id: int, raises: bool, force: bool) -> None:
        called: list[int] = []

        def handler(event: Any) -> str:
            called.append(event.id)
            if raises:
                raise HandlerBoom(f"handler failed on event {event.id}")
            return "done"

        error = self.start_error(event_id, force)
        if error is not None:
            self.expect_error(error, lambda: self.ledger.run(event_id, handler, force=force))
            assert not called, "the handler ran although the claim was refused"
            return
        result = self.ledger.run(event_id, handler, force=force, lease_seconds=LEASE_SECONDS)
        assert called == [event_id]
        if raises:
            assert result.attempt.error_type == "HandlerBoom"
            assert result.attempt.error == f"handler failed on event {event_id}"
        self.settle(event_id, not raises, "HandlerBoom" if raises else None, result)

    @rule(event_id=UNKNOWN_IDS, step=st.sampled_from(["claim", "report", "run", "show", "bury", "revive"]))
    def unknown_event(self, event_id: int, step: str) -> None:
        calls = {
            "claim": lambda: self.ledger.claim(event_id),
            "report": lambda: self.ledger.report(event_id, True),
            "run": lambda: self.ledger.run(event_id, print),
            "show": lambda: self.ledger.show(event_id),
            "bury": lambda: self.ledger.bury(event_id),
            "revive": lambda: self.ledger.revive(event_id),
        }
        self.expect_error(NotFound, calls[step])

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 300, 3600]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.live))
    @rule(extra=st.sampled_from([0, 1, 120]))
    def leases_expire(self, extra: int) -> None:
        """Let the claims held now expire, then recover them (a worker that crashed)."""
        self.clock.advance(LEASE_SECONDS + extra)
        self.recover()

    @rule()
    def recover(self) -> None:
        now = self.clock.now
        expired = {i for i, ev in self.model.items() if ev.lease_until is not None and ev.lease_until < now}
        results = self.ledger.recover()
        if expired:
            event("recovered expired claims")
        assert {r.event_id for r in results} == expired
        for result in results:
            assert result.attempt.outcome == "abandoned"
            self.settle(result.event_id, False, "LeaseExpired", result)

    @precondition(lambda self: hasattr(Ledger, "bury"))
    @rule(event_id=events)
    def bury(self, event_id: int) -> None:
        ev = self.model.get(event_id)
        if ev is None or ev.state is not F:
            error = NotFound if ev is None else InvalidTransition
            self.expect_error(error, lambda: self.ledger.bury(event_id))
            return
        assert self.ledger.bury(event_id, actor="ops").state is D
        event("buried")
        ev.state, ev.next_retry, ev.due_at = D, None, None

    @precondition(lambda self: hasattr(Ledger, "revive"))
    @rule(event_id=events)
    def revive(self, event_id: int) -> None:
        ev = self.model.get(event_id)
        if ev is None or ev.state is not D:
            error = NotFound if ev is None else InvalidTransition
            self.expect_error(error, lambda: self.ledger.revive(event_id))
            return
        assert self.ledger.revive(event_id, actor="ops").state is P
        event("revived")
        ev.state, ev.budget, ev.due_at = P, 0, self.clock.now

    # -- checks --------------------------------------------------------------------------------------
    @invariant()
    def matches_model_and_history_only_grows(self) -> None:
        es = sa.table("event_state", sa.column("event_id"), sa.column("state"), sa.column("attempt_count"),
                      sa.column("next_retry_at_us"))
        with self.ledger.store.read() as conn:
            rows = {r.event_id: r for r in conn.execute(sa.select(es))}
        assert set(rows) == set(self.model)
        for event_id, ev in self.model.items():
            row = rows[event_id]
            assert (row.state, row.attempt_count) == (ev.state, ev.attempts), f"event {event_id}"
            retry_us = to_us(ev.next_retry) if ev.next_retry else None
            assert row.next_retry_at_us == retry_us, f"event {event_id}"
        now = self.history()
        for table, before in self.seen.items():
            assert now[table][: len(before)] == before, f"history of {table} was changed, not appended to"
        self.seen = now
        self.steps += 1
        if self.steps % 7 == 0:
            self.check_verify()

    def check_verify(self) -> None:
        report = self.ledger.verify()
        assert report.ok, report.problems
        assert report.checked_events == len(self.model)

    def teardown(self) -> None:
        try:
            self.check_verify()
            with Ledger(self.url, readonly=True, config=CONFIG, clock=self.clock) as readonly:
                assert readonly.verify().ok
        finally:
            self.ledger.close()
            drop_database(self.token)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ledger_follows_the_model(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if backend == "postgresql":
        require_postgres()
    LedgerMachine.backend = backend
    LedgerMachine.tmp_factory = tmp_path_factory
    examples = 25 if backend == "sqlite" else 8
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=examples, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
