"""Replay one event's history and compare it with its projection row (the heart of ``verify``). Pure.

History is the authority: the ``transition`` rows (in id order) and the ``attempt`` rows (in number order)
of an event. Replaying them gives what its ``event_state`` row must say; any difference is a problem.
Rows are anything with the column attributes (SQLAlchemy rows in practice, simple objects in tests).

``next_retry_at`` is the one projected value history does not hold: it came from the retry policy in force
when the attempt failed. It must lie within what any policy can give; a difference from what the *current*
policy gives is only a note (the configuration may have changed since), not a problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from failure_aware.domain.policy import MAX_DELAY_SECONDS, RetryPolicy, decide_after_failure, decide_cached
from failure_aware.domain.states import ATTEMPT_STEPS, OTHER_STEPS, Outcome, State, legal_by_any
from failure_aware.domain.timeutil import format_time, from_us, to_us

_MAX_DELAY_US = int(MAX_DELAY_SECONDS * 1_000_000)
_OUTCOMES = frozenset(Outcome)
_CLAIM_COLUMNS = ("claim_token", "claimed_by", "claimed_at_us", "lease_expires_at_us")


@dataclass
class Replayed:
    """What history says an event's projection must hold."""

    state: State | None = None
    entered_at_us: int | None = None  # when the current state was entered
    entered_by: str | None = None  # who moved it there
    budget_failures: int = 0
    ok: bool = True  # False when the chain broke and the projection cannot be compared in full
    problems: list[str] = field(default_factory=list)


def event_problems(
    event: Any,
    projection: Any | None,
    transitions: Sequence[Any],
    attempts: Sequence[Any],
    policy: RetryPolicy,
) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` of one event: its history replayed against its ``event_state`` row."""
    where = f"event {event.id}"
    problems = [f"{where}: {p}" for p in _attempt_problems(event, attempts)]
    replayed = replay(event, transitions, attempts)
    problems += [f"{where}: {p}" for p in replayed.problems]
    if projection is None:
        problems.append(f"{where}: no event_state row (the projection lost it)")
        return problems, []
    mismatches, notes = _projection_problems(event, projection, replayed, attempts, policy)
    return problems + [f"{where}: {p}" for p in mismatches], [f"{where}: {n}" for n in notes]


def _attempt_problems(event: Any, attempts: Sequence[Any]) -> list[str]:
    problems = []
    numbers = [a.number for a in attempts]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"attempt numbers are {numbers}, expected 1..{len(numbers)} without gaps")
    if attempts and attempts[0].at_us < event.detected_at_us:
        problems.append(
            f"attempt {attempts[0].number} at {_t(attempts[0].at_us)} is before the event's detection "
            f"at {_t(event.detected_at_us)}"
        )
    for before, after in pairwise(attempts):
        if after.at_us < before.at_us:
            problems.append(
                f"attempt {after.number} at {_t(after.at_us)} is earlier than attempt {before.number} "
                f"at {_t(before.at_us)}"
            )
    for a in attempts:
        if a.outcome not in _OUTCOMES:
            problems.append(f"attempt {a.number} has unknown outcome {a.outcome!r}")
        elif a.outcome == Outcome.SUCCEEDED and (a.error_type is not None or a.error is not None):
            problems.append(f"attempt {a.number} succeeded but carries an error")
        if a.event_type != event.event_type:
            problems.append(f"attempt {a.number} has type {a.event_type!r}, its event {event.event_type!r}")
    return problems


def replay(event: Any, transitions: Sequence[Any], attempts: Sequence[Any]) -> Replayed:
    """Walk the transitions: check each is legal (SPEC section 3) and follows the previous one."""
    result = Replayed()
    by_number = {a.number: a for a in attempts}
    if not transitions:
        result.problems.append("no transitions at all (not even its detection)")
        result.ok = False
        return result
    first = transitions[0]
    if first.from_state is not None or first.to_state != State.PENDING or first.attempt_number is not None:
        result.problems.append(
            f"first transition is {first.from_state} -> {first.to_state}, expected (new) -> PENDING"
        )
        result.ok = False
    elif first.at_us != event.detected_at_us:
        result.problems.append(
            f"detected at {_t(event.detected_at_us)} but its first transition is at {_t(first.at_us)}"
        )
    result.state, result.entered_at_us, result.entered_by = State.PENDING, first.at_us, first.actor
    expected_number = 1
    for t in transitions[1:]:
        problem = _step_problem(t, result.state, by_number, expected_number)
        if problem is not None:
            result.problems.append(f"transition {t.id} ({t.from_state} -> {t.to_state}): {problem}")
            result.ok = False
            break
        if t.attempt_number is not None:
            expected_number += 1
            if by_number[t.attempt_number].outcome != Outcome.SUCCEEDED:
                result.budget_failures += 1
        elif t.to_state == State.PENDING:  # revive: the retry budget restarts
            result.budget_failures = 0
        result.state, result.entered_at_us, result.entered_by = State(t.to_state), t.at_us, t.actor
    else:
        if expected_number - 1 != len(attempts):
            result.problems.append(
                f"{len(attempts)} attempts but {expected_number - 1} transitions record an attempt outcome"
            )
            result.ok = False
    return result


def _step_problem(
    t: Any, current: State | None, by_number: dict[int, Any], expected_number: int
) -> str | None:
    """Why transition ``t`` cannot follow a state ``current``, or None when it is legal."""
    if t.from_state != current:
        return f"does not start from the state before it ({current})"
    try:
        source, target = State(t.from_state), State(t.to_state)
    except ValueError:
        return "names an unknown state"
    if t.attempt_number is None:
        if not legal_by_any(source, target, OTHER_STEPS):
            return "is not a legal claim, bury or revive"
        return None
    if not legal_by_any(source, target, ATTEMPT_STEPS):
        return f"is not a legal outcome of attempt {t.attempt_number}"
    if t.attempt_number != expected_number:
        return f"records attempt {t.attempt_number}, expected attempt {expected_number}"
    recorded = by_number.get(t.attempt_number)
    if recorded is None:
        return f"records attempt {t.attempt_number}, which does not exist"
    if recorded.at_us != t.at_us:
        return f"is at {_t(t.at_us)} but its attempt is at {_t(recorded.at_us)}"
    if (recorded.outcome == Outcome.SUCCEEDED) != (target == State.SUCCEEDED):
        return f"does not match the attempt's outcome ({recorded.outcome})"
    if recorded.outcome == Outcome.ABANDONED and source != State.IN_FLIGHT:
        return "records an abandoned attempt of an event that was not claimed"
    return None


def _projection_problems(
    event: Any, row: Any, replayed: Replayed, attempts: Sequence[Any], policy: RetryPolicy
) -> tuple[list[str], list[str]]:
    last = attempts[-1] if attempts else None
    failed_last = last is not None and last.outcome != Outcome.SUCCEEDED
    expected: dict[str, Any] = {
        "event_type": event.event_type,
        "detected_at_us": event.detected_at_us,
        "attempt_count": len(attempts),
        "last_attempt_at_us": last.at_us if last is not None else None,
        "last_error_type": last.error_type if failed_last and last is not None else None,
        "last_error": last.error if failed_last and last is not None else None,
    }
    if replayed.ok:
        expected["state"] = str(replayed.state)
        expected["budget_failures"] = replayed.budget_failures
    problems = [
        f"event_state.{column} is {_show(column, getattr(row, column))}, history says {_show(column, value)}"
        for column, value in expected.items()
        if getattr(row, column) != value
    ]
    if problems or not replayed.ok:
        return problems, []  # the rest compares against a state we cannot trust
    return _timing_problems(row, replayed, last, policy)


def _timing_problems(
    row: Any, replayed: Replayed, last: Any | None, policy: RetryPolicy
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    state = replayed.state
    if state == State.FAILED:
        problems += _retry_time_problems(row, replayed, last, policy, notes)
    elif row.next_retry_at_us is not None:
        problems.append(f"next_retry_at is set ({_t(row.next_retry_at_us)}) on a {state} event")
    if state == State.PENDING and row.due_at_us != replayed.entered_at_us:
        problems.append(
            f"due_at is {_t(row.due_at_us)}; a PENDING event is due from {_t(replayed.entered_at_us)}, "
            "when it became PENDING"
        )
    elif state == State.FAILED and row.due_at_us != row.next_retry_at_us:
        problems.append(f"due_at is {_t(row.due_at_us)}, next_retry_at {_t(row.next_retry_at_us)}")
    elif state not in (State.PENDING, State.FAILED) and row.due_at_us is not None:
        problems.append(f"due_at is set ({_t(row.due_at_us)}) on a {state} event")
    claim = {c: getattr(row, c) for c in _CLAIM_COLUMNS}
    if state == State.IN_FLIGHT:
        missing = [c for c, v in claim.items() if v is None]
        if missing:
            problems.append(f"IN_FLIGHT without {', '.join(missing)}")
        elif row.claimed_at_us != replayed.entered_at_us or row.claimed_by != replayed.entered_by:
            problems.append(
                f"claimed by {row.claimed_by} at {_t(row.claimed_at_us)}, but history has the claim by "
                f"{replayed.entered_by} at {_t(replayed.entered_at_us)}"
            )
        elif row.lease_expires_at_us <= row.claimed_at_us:
            problems.append("the claim's lease expires before it was taken")
    else:
        held = [c for c, v in claim.items() if v is not None] + (["claim_forced"] if row.claim_forced else [])
        if held:
            problems.append(f"{state} but claim fields are set: {', '.join(held)}")
    return problems, notes


def _retry_time_problems(
    row: Any, replayed: Replayed, last: Any | None, policy: RetryPolicy, notes: list[str]
) -> list[str]:
    if last is None or last.outcome == Outcome.SUCCEEDED:
        return ["FAILED without a failed last attempt"]
    retry_us = row.next_retry_at_us
    if retry_us is None:
        return ["FAILED without next_retry_at"]
    if not last.at_us <= retry_us <= last.at_us + _MAX_DELAY_US:
        return [
            f"next_retry_at {_t(retry_us)} is not within 0 s to 365 days after the failed attempt "
            f"at {_t(last.at_us)}"
        ]
    if replayed.budget_failures < 1:
        return ["FAILED with no failure since its retry budget (re)started"]
    dead_reason, delay_us = _policy_decision(policy, replayed.budget_failures, last.error_type, row.event_id)
    if dead_reason is not None:
        notes.append(f"FAILED, but the current retry policy would have made it DEAD ({dead_reason})")
    elif last.at_us + delay_us != retry_us:
        notes.append(
            f"next_retry_at is {_t(retry_us)}; the current retry policy gives "
            f"{_t(last.at_us + delay_us)} (expected if the policy changed since)"
        )
    return []


def _policy_decision(
    policy: RetryPolicy, failure_number: int, error_type: str | None, event_id: int
) -> tuple[str | None, int]:
    """``(why DEAD or None, delay in microseconds)`` after a failure, exactly as ``settle`` computes it."""
    # From the epoch, so the result is the delay that settle adds (to_us(at + timedelta(seconds=delay))).
    if policy.jitter == "none":  # the same for every event: decided once (policy.decide_cached)
        decision = decide_cached(policy, failure_number, error_type)
    else:
        decision = decide_after_failure(policy, failure_number, error_type, from_us(0), event_id)
    if decision.next_retry_at is None:
        return decision.reason, 0
    return None, to_us(decision.next_retry_at)


def _show(column: str, value: Any) -> str:
    return str(_t(value)) if column.endswith("_us") and isinstance(value, int) else repr(value)


def _t(micros: int | None) -> str | None:
    return None if micros is None else format_time(from_us(micros))
