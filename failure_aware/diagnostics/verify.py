"""``verify``: check that the derived data still agrees with history, and that history is protected.

Four checks, all read-only (SPEC sections 1 and 9):

(a) the projection: every ``event_state`` row equals a replay of its event's transitions and attempts, and
    the history itself is a legal chain (``replay.event_problems``);
(b) the counters: ``state_count`` equals a recount of ``event_state``;
(c) the immutability triggers are all in place;
(d) the clusters in ``failure_cluster`` equal a rebuild (``correlation.clusters_match_rebuild``), and the
    incidents a rebuild from them (``correlation.incidents_match_rebuild``).

The history is streamed in id-ordered chunks of events (four queries per chunk, never one per event), so
memory stays constant on millions of events. Run it inside one read transaction; on PostgreSQL call
``consistent_snapshot`` first so every chunk sees the same moment even while workers keep writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Select, select, text

from ..core import counters, totals
from ..correlation import clusters_match_rebuild, incidents_match_rebuild
from ..policy import PolicySet
from ..storage import triggers
from ..storage.tables import attempt, event_detected, event_state, transition
from .replay import event_problems

DEFAULT_BATCH_SIZE = 1000
DEFAULT_MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. ``problems`` are disagreements (the ledger is not consistent); ``notes`` are
    observations that need no repair (e.g. a ``next_retry_at`` that an older retry policy computed)."""

    problems: tuple[str, ...]
    checked_events: int
    notes: tuple[str, ...] = ()
    clusters_checked: bool = True  # whether failure_cluster was compared with a rebuild

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "checked_events": self.checked_events,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "clusters_checked": self.clusters_checked,
        }


class _Findings:
    """Problems and notes, each kept up to a limit (then only counted) so a ruined database cannot exhaust
    memory; the report says how many were left out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.more_problems = 0
        self.more_notes = 0

    def problem(self, *messages: str) -> None:
        for message in messages:
            if len(self.problems) < self.limit:
                self.problems.append(message)
            else:
                self.more_problems += 1

    def note(self, *messages: str) -> None:
        for message in messages:
            if len(self.notes) < self.limit:
                self.notes.append(message)
            else:
                self.more_notes += 1

    def report(self, checked_events: int) -> VerifyReport:
        problems = self.problems + [f"... and {self.more_problems} more problems"] * bool(self.more_problems)
        notes = self.notes + [f"... and {self.more_notes} more notes"] * bool(self.more_notes)
        return VerifyReport(tuple(problems), checked_events, tuple(notes))


def consistent_snapshot(conn: Connection) -> None:
    """Make the rest of this transaction read one snapshot (PostgreSQL: REPEATABLE READ; must come before
    any other statement of the transaction). SQLite's WAL read transactions are snapshots already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


def verify(
    conn: Connection,
    policies: PolicySet,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> VerifyReport:
    """Run every check over the database of ``conn``; writes nothing."""
    findings = _Findings(max_problems)
    checked = _check_events(conn, policies, findings, batch_size)
    _check_counters(conn, findings)
    _check_attempt_totals(conn, findings)
    findings.problem(*(f"immutability trigger {name} is missing" for name in triggers.missing(conn)))
    _check_clusters(conn, findings)
    return findings.report(checked)


# -- (a) projection vs replay ------------------------------------------------------------------------
def _check_events(conn: Connection, policies: PolicySet, findings: _Findings, batch_size: int) -> int:
    checked = 0
    after = 0  # ids are positive
    while True:
        events = conn.execute(
            select(event_detected.c.id, event_detected.c.event_type, event_detected.c.detected_at_us)
            .where(event_detected.c.id > after).order_by(event_detected.c.id).limit(batch_size)
        ).all()
        # The last chunk reaches to the end, so rows of events that do not exist are found too.
        upto = events[-1].id if len(events) == batch_size else None
        es, tr, at = event_state.c, transition.c, attempt.c
        projections = {r.event_id: r for r in _chunk(conn, select(event_state), es.event_id, after, upto)}
        history = _grouped(_chunk(conn, _transition_columns(), tr.event_id, after, upto, tr.id))
        tries = _grouped(_chunk(conn, _attempt_columns(), at.event_id, after, upto, at.number))
        for event in events:
            problems, notes = event_problems(
                event, projections.pop(event.id, None), history.pop(event.id, ()), tries.pop(event.id, ()),
                policies.for_type(event.event_type),
            )
            findings.problem(*problems)
            findings.note(*notes)
        for table, orphans in (("event_state", projections), ("transition", history), ("attempt", tries)):
            findings.problem(*(f"{table} has rows for event {i}, never detected" for i in sorted(orphans)))
        checked += len(events)
        if upto is None:
            return checked
        after = upto


# Everything replay needs, and not the columns it does not (reasons, fingerprints) to keep chunks small.
def _transition_columns() -> Select[Any]:
    t = transition.c
    return select(t.id, t.event_id, t.at_us, t.from_state, t.to_state, t.actor, t.attempt_number)


def _attempt_columns() -> Select[Any]:
    a = attempt.c
    return select(a.id, a.event_id, a.event_type, a.number, a.at_us, a.outcome, a.error_type, a.error)


def _chunk(
    conn: Connection, query: Select[Any], event_column: Any, after: int, upto: int | None, *order: Any
) -> Iterator[Any]:
    """Rows of ``query`` for events with ``after < id <= upto`` (no upper bound when ``upto`` is None)."""
    query = query.where(event_column > after)
    if upto is not None:
        query = query.where(event_column <= upto)
    yield from conn.execute(query.order_by(event_column, *order)).all()  # one fetchall, not a fetch per row


def _grouped(rows: Iterable[Any]) -> dict[int, Sequence[Any]]:
    return {event_id: list(group) for event_id, group in groupby(rows, key=lambda r: r.event_id)}


# -- (b) counters --------------------------------------------------------------------------------------
def _check_counters(conn: Connection, findings: _Findings) -> None:
    actual, stored = counters.recount(conn), counters.stored(conn)
    for key in sorted(set(actual) | set(stored)):
        if actual.get(key, 0) != stored.get(key, 0):
            event_type, state = key
            findings.problem(
                f"state_count says {stored.get(key, 0)} {event_type} events are {state}; "
                f"event_state has {actual.get(key, 0)}"
            )


def _check_attempt_totals(conn: Connection, findings: _Findings) -> None:
    actual, stored = totals.recount(conn), totals.stored(conn)
    for key in sorted(set(actual) | set(stored)):
        if actual.get(key, 0) != stored.get(key, 0):
            event_type, outcome = key
            findings.problem(
                f"attempt_total says {stored.get(key, 0)} {event_type} attempts {outcome}; "
                f"attempt has {actual.get(key, 0)}"
            )


# -- (d) clusters ----------------------------------------------------------------------------------------
def _check_clusters(conn: Connection, findings: _Findings) -> None:
    """The stored clusters must equal a rebuild (computed in memory; types with failures newer than the
    last ``correlate`` are left out by the check: they are stale by design until the next run)."""
    findings.problem(*clusters_match_rebuild(conn))
    findings.problem(*incidents_match_rebuild(conn))
