"""The state machine of SPEC section 3: the only legal transitions, as data.

Pure: no I/O. The operation modules ask ``require`` before they write, and then guard the UPDATE with the
same ``from`` states, so a concurrent change is caught by the row count as well.
"""

from __future__ import annotations

from enum import StrEnum

from failure_aware.domain.errors import InvalidTransition


class State(StrEnum):
    """Where an event stands. Every change is a row in ``transition``."""

    PENDING = "PENDING"  # detected (or revived), waiting for a runner      (new) -> PENDING, DEAD -> PENDING
    IN_FLIGHT = "IN_FLIGHT"  # claimed by a runner that holds a token     PENDING, FAILED -> IN_FLIGHT
    SUCCEEDED = "SUCCEEDED"  # an attempt succeeded (terminal)            IN_FLIGHT, PENDING, FAILED -> ...
    FAILED = "FAILED"  # an attempt failed, retries left; next_retry_at set
    DEAD = "DEAD"  # no attempts left, non-retryable, or buried by an operator


class Outcome(StrEnum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its claim's lease expired and `recover` closed it


class Step(StrEnum):
    """What moves an event (the ``by`` column of SPEC section 3)."""

    CLAIM = "claim"
    FINISH = "finish"
    RECOVER = "recover"
    REPORT = "report"
    BURY = "bury"
    REVIVE = "revive"


P, F, S, D, FLIGHT = State.PENDING, State.FAILED, State.SUCCEEDED, State.DEAD, State.IN_FLIGHT

LEGAL: dict[Step, dict[State, frozenset[State]]] = {
    Step.CLAIM: {P: frozenset({FLIGHT}), F: frozenset({FLIGHT})},
    Step.FINISH: {FLIGHT: frozenset({S, F, D})},
    Step.RECOVER: {FLIGHT: frozenset({F, D})},
    Step.REPORT: {P: frozenset({S, F, D}), F: frozenset({S, F, D})},
    Step.BURY: {F: frozenset({D})},
    Step.REVIVE: {D: frozenset({P})},
}

_HINTS: dict[Step, str] = {
    Step.CLAIM: "only PENDING or FAILED events can be claimed",
    Step.FINISH: "only an IN_FLIGHT event can be finished, by the runner holding its claim",
    Step.RECOVER: "only IN_FLIGHT events with an expired lease can be recovered",
    Step.REPORT: "report takes PENDING or FAILED events; an IN_FLIGHT one is finished by its runner",
    Step.BURY: "only FAILED events can be buried",
    Step.REVIVE: "only DEAD events can be revived",
}


# The steps that record an attempt's outcome, and the steps that move an event without one.
ATTEMPT_STEPS = (Step.FINISH, Step.RECOVER, Step.REPORT)
OTHER_STEPS = (Step.CLAIM, Step.BURY, Step.REVIVE)


def legal_by_any(current: State, target: State, steps: tuple[Step, ...]) -> bool:
    """Whether one of ``steps`` may move ``current`` to ``target``: how recorded history is judged (verify's
    replay, an import's given transitions), where the step itself is not recorded."""
    return any(target in LEGAL[step].get(current, frozenset()) for step in steps)


def from_states(step: Step) -> frozenset[State]:
    """The states ``step`` may start from."""
    return frozenset(LEGAL[step])


def require(step: Step, current: State, target: State, event_id: int) -> None:
    """Raise ``InvalidTransition`` unless ``step`` may move ``current`` to ``target``."""
    if target not in LEGAL[step].get(current, frozenset()):
        raise InvalidTransition(
            f"event {event_id} is {current}: cannot {step} it to {target} ({_HINTS[step]})"
        )


def is_unresolved(state: State) -> bool:
    """Whether the event still needs work (not SUCCEEDED, not DEAD)."""
    return state in (P, FLIGHT, F)
