"""The state history an imported event gets: derived from its attempts by the policy, or given and checked.

``derive`` replays the attempts from PENDING the way ``report`` would (SPEC sections 3 and 4): a success
ends in SUCCEEDED, the n-th failure of the budget ends in DEAD at ``max_attempts`` or for a non-retryable
error type, otherwise in FAILED; nothing may follow SUCCEEDED or DEAD. Retry timing is not enforced: the
attempts are history, not requests.

``check_given`` accepts a record's own ``transitions`` (the export's extension, needed for states attempts
alone cannot give: a buried DEAD, a revived event, an IN_FLIGHT claim) when they form a legal chain of
SPEC-3 steps from ``(new) -> PENDING`` and account for every attempt, in order.

Both return the transitions and the failures counted in the current retry budget (since detection or the
last revive). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.policy import RetryPolicy, backoff_delay_seconds, decide_cached
from failure_aware.domain.states import OTHER_STEPS, State, Step, legal_by_any
from failure_aware.interchange.forms import (
    ABANDONED,
    DEAD,
    FAILED,
    FAILURE,
    IN_FLIGHT,
    OK,
    PENDING,
    SUCCEEDED,
    AttemptIn,
    TransitionIn,
)

_TERMINAL = (SUCCEEDED, DEAD)
_FAILURES = (FAILURE, ABANDONED)
_ONE_US = timedelta(microseconds=1)


def derive(
    attempts: tuple[AttemptIn, ...], detected_at_us: int, policy: RetryPolicy, actor: str
) -> tuple[tuple[TransitionIn, ...], int]:
    """The transitions of replaying ``attempts`` from PENDING under ``policy``, and the budget failures."""
    chain, budget = derive_plain(attempts, detected_at_us, policy, actor)
    return tuple(map(TransitionIn._make, chain)), budget


def derive_plain(
    attempts: Sequence[Sequence[Any]], detected_at_us: int, policy: RetryPolicy, actor: str
) -> tuple[tuple[tuple[Any, ...], ...], int]:
    """``derive`` with plain tuples: ``attempts`` as the fields of ``AttemptIn`` in order, transitions as
    those of ``TransitionIn`` (what the spool holds; the importer's fast path builds no NamedTuples)."""
    chain: list[tuple[Any, ...]] = [(detected_at_us, None, PENDING, actor, "imported: detected", None)]
    state: str = PENDING
    budget = 0
    for number, values in enumerate(attempts, 1):
        at_us, outcome, started_at_us, error_type, _, forced, attempt_actor = values[:7]
        if state in _TERMINAL:
            raise ValidationError(
                f"attempts[{number - 1}]: attempt {number} comes after attempt {number - 1} left the event "
                f"{state}; nothing follows {state} (give 'transitions' for a revived event)"
            )
        reason = f"imported: attempt {number} {outcome}"
        if outcome == ABANDONED:
            # Only a claimed attempt can be abandoned (its lease expired): record the claim it implies.
            claimed_at_us = at_us if started_at_us is None else started_at_us
            chain.append((claimed_at_us, state, IN_FLIGHT, attempt_actor, "imported: claimed", None))
            state = IN_FLIGHT
        if outcome == OK:
            target = SUCCEEDED
        else:
            budget += 1
            # whether it kills is the same for every id and time: decided once (next_retry_us: the real ones)
            decision = decide_cached(policy, budget, error_type)
            target = DEAD if decision.dead else FAILED
            if decision.dead:
                reason += f": {decision.reason}"
        if forced:
            reason += " (forced)"
        chain.append((at_us, state, target, actor, reason, number))
        state = target
    return tuple(chain), budget


def check_given(
    transitions: tuple[TransitionIn, ...], attempts: tuple[AttemptIn, ...]
) -> tuple[tuple[TransitionIn, ...], int]:
    """Check a record's transitions against SPEC section 3 and its attempts; return them and the budget."""
    if not transitions:
        raise ValidationError(
            "transitions, when given, start with the detection: from_state null, to_state PENDING"
        )
    first = transitions[0]
    if first.from_state is not None or first.to_state != State.PENDING or first.attempt_number is not None:
        raise ValidationError("transitions[0] must be the detection: from_state null, to_state PENDING")
    expected = 1  # the attempt the next attempt-carrying transition must record
    budget = 0
    for index in range(1, len(transitions)):
        step, previous = transitions[index], transitions[index - 1]
        where = f"transitions[{index}]"
        if step.from_state != previous.to_state:
            raise ValidationError(
                f"{where}.from_state is {step.from_state} "
                f"but transitions[{index - 1}] ended in {previous.to_state}"
            )
        current, target = State(step.from_state), State(step.to_state)
        if step.attempt_number is None:
            if not legal_by_any(current, target, OTHER_STEPS):
                raise ValidationError(
                    f"{where}: {current} -> {target} without an attempt is not a legal step "
                    "(claim PENDING/FAILED -> IN_FLIGHT, bury FAILED -> DEAD, revive DEAD -> PENDING)"
                )
            if target == State.PENDING:
                budget = 0  # a revive restarts the retry budget
            continue
        if step.attempt_number != expected:
            raise ValidationError(f"{where}.attempt_number is {step.attempt_number}; expected {expected}")
        if expected > len(attempts):
            raise ValidationError(
                f"{where} records attempt {expected} but the record has {len(attempts)} attempts"
            )
        item = attempts[expected - 1]
        if step.at_us != item.at_us:
            raise ValidationError(
                f"{where}.at differs from attempts[{expected - 1}].at, the attempt it records"
            )
        _check_attempt_step(where, current, target, item)
        if item.outcome in _FAILURES:
            budget += 1
        expected += 1
    if expected <= len(attempts):
        raise ValidationError(f"attempts[{expected - 1}] (attempt {expected}) has no transition recording it")
    return transitions, budget


def _check_attempt_step(where: str, current: State, target: State, item: AttemptIn) -> None:
    wanted = (State.SUCCEEDED,) if item.outcome == OK else (State.FAILED, State.DEAD)
    if target not in wanted:
        raise ValidationError(f"{where}: an attempt that {item.outcome} cannot move the event to {target}")
    if item.outcome == ABANDONED and current != State.IN_FLIGHT:
        raise ValidationError(f"{where}: an abandoned attempt ends a claim, so it must start from IN_FLIGHT")
    if current == State.IN_FLIGHT:
        steps = (Step.RECOVER,) if item.outcome == ABANDONED else (Step.FINISH,)
    else:
        steps = (Step.REPORT,)
    if not legal_by_any(current, target, steps):
        raise ValidationError(
            f"{where}: {current} -> {target} is not a legal step for a {item.outcome} attempt"
        )




def next_retry_us(policy: RetryPolicy, failures: int, failed_at_us: int, event_id: int) -> int:
    """``next_retry_at`` (microseconds) after budget failure number ``failures`` at ``failed_at_us``.

    The time ``decide_after_failure`` gives (``failed_at + backoff_delay_seconds``, to the microsecond); for
    transitions given in a record, replayed as they are, also where the policy would have given up, so the
    FAILED event stays runnable.
    """
    delay = timedelta(seconds=backoff_delay_seconds(policy, failures, event_id))
    return failed_at_us + delay // _ONE_US


_NO_ID = 0  # any id: the delay asked for does not depend on it
_CACHE_LIMIT = 10_000
_fixed_delays: dict[tuple[int, int], tuple[RetryPolicy, int | None]] = {}


def fixed_delay_us(policy: RetryPolicy, failures: int) -> int | None:
    """The retry delay (microseconds) after budget failure number ``failures`` when it does not depend on
    the event id (no jitter), else ``None``: ``next_retry_us`` is then ``failed_at_us`` plus this, which
    the checking pass can compute before ids exist. Cached like ``policy.decide_cached``."""
    key = (id(policy), failures)
    found = _fixed_delays.get(key)
    if found is None or found[0] is not policy:
        if len(_fixed_delays) >= _CACHE_LIMIT:
            _fixed_delays.clear()
        delay = None if policy.jitter != "none" else next_retry_us(policy, failures, 0, _NO_ID)
        found = _fixed_delays[key] = (policy, delay)
    return found[1]
