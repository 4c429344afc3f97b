"""Dead letters grouped by event type and the fingerprint of their last failure (the dashboard's ``/dead``).

How many events of a type are DEAD comes from the counters (exact, no scan). The grouping by fingerprint
reads the most recent ``sample`` DEAD events of each type (an ordered range of
``ix_event_state_type_detected``) and the last attempt of each (``ix_attempt_event``), so its cost is bounded
by ``sample`` per type, never by the history: when more are dead, the groups say they describe a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from failure_aware.domain.records import Record
from failure_aware.domain.states import State
from failure_aware.events import counters
from failure_aware.storage.tables import attempt, event_state


@dataclass(frozen=True)
class DeadLetterGroup(Record):
    """DEAD events of one type whose last failure has one fingerprint (within the sample read)."""

    event_type: str
    fingerprint: str | None
    error_type: str | None
    example_error: str | None  # the message of the newest event of the group
    count: int  # events of the group in the sample
    newest_event_id: int


@dataclass(frozen=True)
class DeadLetterType(Record):
    """One event type's dead letters: the exact count and the groups of its newest ``sampled`` events."""

    event_type: str
    dead: int  # exact, from the counters
    sampled: int  # how many of the newest were grouped (== dead unless there are more than the sample)
    groups: tuple[DeadLetterGroup, ...]


def dead_letters(conn: Connection, *, sample: int, event_type: str | None = None) -> list[DeadLetterType]:
    """Types with DEAD events (most dead first), each with its fingerprint groups (largest first)."""
    dead = {kind: n for (kind, state), n in counters.stored(conn).items()
            if state == State.DEAD and n > 0 and (event_type is None or kind == event_type)}
    es, a = event_state.c, attempt.c
    found: list[DeadLetterType] = []
    for kind in sorted(dead, key=lambda k: (-dead[k], k)):
        newest = (
            select(es.event_id, es.attempt_count, es.last_error_type, es.last_error)
            .where(es.event_type == kind, es.state == State.DEAD)
            .order_by(es.detected_at_us.desc(), es.event_id.desc())
            .limit(sample)
            .subquery()
        )
        # a scalar subquery per row: one lookup of (event_id, number) each, whatever the planner's
        # statistics say (a join may be planned as a hash join over every attempt)
        last_fingerprint = (
            select(a.fingerprint)
            .where(a.event_id == newest.c.event_id, a.number == newest.c.attempt_count)
            .scalar_subquery()
        )
        rows = conn.execute(
            select(newest.c.event_id, newest.c.last_error_type, newest.c.last_error, last_fingerprint)
        ).all()
        groups: dict[str | None, list[tuple[int, str | None, str | None]]] = {}
        for event_id, error_type, error, fingerprint in rows:
            groups.setdefault(fingerprint, []).append((event_id, error_type, error))
        made = []
        for fingerprint, members in groups.items():
            newest_id, error_type, error = max(members, key=lambda m: m[0])
            made.append(DeadLetterGroup(kind, fingerprint, error_type, error, len(members), newest_id))
        made.sort(key=lambda g: (-g.count, -g.newest_event_id))
        found.append(DeadLetterType(kind, dead[kind], len(rows), tuple(made)))
    return found


__all__ = ["DeadLetterGroup", "DeadLetterType", "dead_letters"]
