"""The normalized forms of interchange records: what is checked, ready to write.

They are ``NamedTuple``s of plain values (times as integer microseconds, states and outcomes as their
string values): cheap to build, and turned into nested plain tuples (``to_plain``) they serialize with
``marshal``, which the importer does to keep a large input out of memory between checking and writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from failure_aware.domain.policy import PolicySet
from failure_aware.domain.states import Outcome, State

# States and outcomes as the plain strings the normalized records hold: marshal refuses enum members, and
# these comparisons run for every imported event.
PENDING, IN_FLIGHT, SUCCEEDED, FAILED, DEAD = (
    State.PENDING.value,
    State.IN_FLIGHT.value,
    State.SUCCEEDED.value,
    State.FAILED.value,
    State.DEAD.value,
)
OK, FAILURE, ABANDONED = Outcome.SUCCEEDED.value, Outcome.FAILED.value, Outcome.ABANDONED.value


class AttemptIn(NamedTuple):
    """An attempt as it will be stored (its number is its position, from 1)."""

    at_us: int
    outcome: str
    started_at_us: int | None
    error_type: str | None
    error: str | None
    forced: bool
    actor: str
    traceback: str | None = None
    duration_us: int | None = None
    detail_json: str | None = None  # a checked JSON object, as text


class AnnotationIn(NamedTuple):
    """A note on the event."""

    at_us: int
    author: str
    text: str


class TransitionIn(NamedTuple):
    """One state change as it will be stored."""

    at_us: int
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    attempt_number: int | None


class EventIn(NamedTuple):
    """A checked record: everything the writer needs except the event id."""

    number: int  # its line (or record) number, for messages
    event_type: str
    key: str
    detected_at_us: int
    payload_json: str
    attempts: tuple[AttemptIn, ...]
    annotations: tuple[AnnotationIn, ...]
    transitions: tuple[TransitionIn, ...]  # never empty: the first is (None -> PENDING)
    next_retry_at_us: int | None  # as given in the record (None: computed by the policy when FAILED)
    budget_failures: int  # failures since the retry budget last (re)started

    @property
    def state(self) -> str:
        """The state the event ends in."""
        return self.transitions[-1].to_state


def to_plain(record: EventIn) -> tuple[Any, ...]:
    """The record as nested plain tuples, which ``marshal`` can store (it refuses tuple subclasses)."""
    return (
        *record[:5],
        tuple(map(tuple, record.attempts)),
        tuple(map(tuple, record.annotations)),
        tuple(map(tuple, record.transitions)),
        record.next_retry_at_us,
        record.budget_failures,
    )


@dataclass(frozen=True)
class ImportContext:
    """What every record of one import shares: the defaults, the limits and the policies."""

    now_us: int  # the import time: default detected_at, recorded_at of the rows
    actor: str  # the actor of derived transitions and default actor of attempts
    max_payload_bytes: int
    policies: PolicySet
    latest_us: int  # the latest time a record may hold: now + max_clock_skew (SPEC 3)
