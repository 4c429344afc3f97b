"""Health diagnostics (SPEC section 6): gather the figures, judge them, return a ``HealthReport``.

Read-only, and built so its cost does not grow with the history: no query reads all events, attempts or
transitions. Each figure comes from the small counters table, from a range of an index bounded by time or
by the current work, or from one ordered index lookup per (event type, state):

===========================  ==========================================================================
counts by state, dead total  ``state_count`` (counters kept with every transition; a few rows per type)
attempts / failure rate      ``ix_attempt_at``: the attempts of the rate window only
retries due, overdue         ``ix_event_state_type_retry``: per type, the FAILED rows due by now
backlog, PENDING due         ``ix_event_state_due``: the rows due by now (outstanding work only)
most overdue retry           the same index, first row per type
stuck claims                 ``ix_event_state_lease``: IN_FLIGHT rows whose lease has expired
deaths in the dead window    ``ix_transition_to_at``: transitions to DEAD in the window (+ id lookups)
oldest unresolved event      ``ix_event_state_type_detected``: first row per (type, unresolved state)
most retried event           ``ix_event_state_type_attempts``: last row per (type, unresolved state)
active clusters              ``ix_failure_cluster_end`` (``window_end >= now - W``) and ``correlation_state``
===========================  ==========================================================================

So a report costs O(types x log events) plus the rows of the windows (attempts of the last hour, deaths of
the last day, due retries, stuck claims, active clusters), whatever the size of the resolved history.
The most retried event is chosen among unresolved events (PENDING, IN_FLIGHT, FAILED): an event that
eventually succeeded or died is history, not a retry loop to look at; ties go to the newest event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Row, Select, case, distinct, func, select

from failure_aware.correlation.rule import active_since_us
from failure_aware.diagnostics.health_report import (
    ClusterMark,
    EventMark,
    HealthFigures,
    HealthReport,
    Reason,
    Verdict,
    failure_rate_reason,
    judge,
    worst,
)
from failure_aware.diagnostics.incident_health import active_incidents, incident_reason
from failure_aware.domain.health_rules import HealthRules
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import from_us
from failure_aware.storage.tables import (
    attempt,
    correlation_state,
    event_detected,
    event_state,
    failure_cluster,
    state_totals,
    transition,
)

__all__ = ["HealthReport", "compute_health"]

UNRESOLVED = (State.PENDING, State.IN_FLIGHT, State.FAILED)
_FAILURE_OUTCOMES = ("failed", "abandoned")
_US = 1_000_000


@dataclass
class _Gathered:
    """The figures of one event type while they are being read."""

    counts: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    failures: int = 0
    due: int = 0
    overdue: int = 0
    pending_due: int = 0
    backlog: int = 0
    backlog_critical: int = 0
    oldest_waiting_us: int | None = None  # the earliest time a PENDING event has been waiting since
    most_overdue: EventMark | None = None
    stuck: int = 0
    oldest_stuck: EventMark | None = None
    dead_recent: int = 0
    oldest_unresolved: EventMark | None = None
    most_retried: EventMark | None = None
    clusters: list[ClusterMark] = field(default_factory=list)


def compute_health(
    conn: Connection,
    rules: HealthRules,
    now_us: int,
    *,
    event_type: str | None = None,
    cluster_window_us: int | None = None,
) -> HealthReport:
    """The health of the ledger behind ``conn`` at ``now_us`` under ``rules``; reads only.

    ``event_type`` restricts every figure to that type. ``cluster_window_us`` is the W of "active cluster"
    (``window_end >= now - W``); None takes the W of the rule stored by ``correlate`` (no cluster is active
    when ``correlate`` never ran). Run it in one read transaction so the figures agree with each other.
    """
    data: defaultdict[str, _Gathered] = defaultdict(_Gathered)
    for kind, state, n in conn.execute(_where_type(
        select(state_totals.c.event_type, state_totals.c.state, state_totals.c.n)
        .where(state_totals.c.n != 0),
        state_totals.c.event_type, event_type,
    )):
        data[kind].counts[state] = int(n)

    _read_rate_window(conn, data, since_us=now_us - _micros(rules.rate_window_seconds), now_us=now_us,
                      event_type=event_type)
    overdue_before_us = now_us - _micros(rules.overdue_after_seconds)
    _read_due_retries(conn, data, now_us=now_us, overdue_before_us=overdue_before_us, event_type=event_type)
    _read_backlog(conn, data, now_us=now_us, after_us=_micros(rules.backlog_after_seconds),
                  critical_us=_micros(rules.critical_backlog_seconds), event_type=event_type)
    _read_stuck_claims(conn, data, now_us=now_us, event_type=event_type)
    _read_recent_deaths(conn, data, since_us=now_us - _micros(rules.dead_window_seconds), now_us=now_us,
                        event_type=event_type)
    _read_unresolved_marks(conn, data, now_us=now_us, event_type=event_type)
    window_us = cluster_window_us if cluster_window_us is not None else _stored_cluster_window(conn)
    if window_us is not None:
        _read_active_clusters(conn, data, since_us=active_since_us(now_us, window_us), event_type=event_type)

    incidents = active_incidents(conn, now_us=now_us, event_type=event_type) if window_us is not None else []
    by_type = tuple(_figures(kind, [data[kind]], rules, now_us) for kind in sorted(data))
    overall = _figures(event_type, list(data.values()), rules, now_us)
    reasons = list(overall.reasons)
    # A failing type can hide behind a healthy busy one in the overall rate: judge each type's rate too.
    overall_rate = failure_rate_reason(overall, rules)
    overall_level = overall_rate.verdict if overall_rate else Verdict.OK
    for figures in by_type:
        own = failure_rate_reason(figures, rules)
        if own is not None and worst([own.verdict, overall_level]) != overall_level and figures.event_type:
            reasons.append(Reason(own.verdict, own.rule, own.message, figures.event_type))
    reasons.extend(r for r in (incident_reason(incidents),) if r is not None)
    return HealthReport(
        verdict=worst(r.verdict for r in reasons),
        reasons=tuple(sorted(reasons, key=lambda r: -r.verdict.exit_code)),
        checked_at=from_us(now_us),
        event_type=event_type,
        rules=rules,
        cluster_window_seconds=None if window_us is None else window_us / _US,
        overall=overall,
        by_type=by_type,
        active_incidents=tuple(incidents),
    )


def _figures(scope: str | None, parts: Sequence[_Gathered], rules: HealthRules, now_us: int) -> HealthFigures:
    """Combine the gathered figures of ``parts`` (one type, or all) and judge them."""
    waiting = [p.oldest_waiting_us for p in parts if p.oldest_waiting_us is not None]
    counts = {state.value: sum(p.counts.get(state, 0) for p in parts) for state in State}
    attempts = sum(p.attempts for p in parts)
    failures = sum(p.failures for p in parts)
    marks = [p.oldest_unresolved for p in parts]
    figures = HealthFigures(
        event_type=scope,
        verdict=Verdict.OK,
        reasons=(),
        counts=counts,
        total_events=sum(counts.values()),
        attempts=attempts,
        failures=failures,
        failure_rate=failures / attempts if attempts else None,
        retries_due=sum(p.due for p in parts),
        overdue_retries=sum(p.overdue for p in parts),
        due=sum(p.due + p.pending_due for p in parts),
        backlog=sum(p.backlog for p in parts),
        backlog_critical=sum(p.backlog_critical for p in parts),
        oldest_waiting_seconds=max(0, now_us - min(waiting)) / _US if waiting else None,
        most_overdue=_first(p.most_overdue for p in parts),
        stuck_claims=sum(p.stuck for p in parts),
        oldest_stuck=_first(p.oldest_stuck for p in parts),
        dead=counts[State.DEAD],
        dead_recent=sum(p.dead_recent for p in parts),
        oldest_unresolved=_first(marks),
        most_retried=max((p.most_retried for p in parts if p.most_retried),
                         key=lambda m: (m.attempt_count, m.event_id), default=None),
        active_clusters=tuple(sorted((c for p in parts for c in p.clusters),
                                     key=lambda c: (c.window_end, c.id), reverse=True)),
    )
    reasons = judge(figures, rules)
    return replace(figures, verdict=worst(r.verdict for r in reasons), reasons=reasons)


def _read_rate_window(
    conn: Connection, data: Mapping[str, _Gathered], *, since_us: int, now_us: int, event_type: str | None
) -> None:
    """Attempts and failures per type within the rate window (ix_attempt_at range)."""
    failed = func.sum(case((attempt.c.outcome.in_(_FAILURE_OUTCOMES), 1), else_=0))
    query = (
        select(attempt.c.event_type, func.count(), failed)
        .where(attempt.c.at_us >= since_us, attempt.c.at_us <= now_us)
        .group_by(attempt.c.event_type)
    )
    for kind, attempts, failures in conn.execute(_where_type(query, attempt.c.event_type, event_type)):
        data[kind].attempts, data[kind].failures = int(attempts), int(failures or 0)


def _read_due_retries(
    conn: Connection, data: Mapping[str, _Gathered], *, now_us: int, overdue_before_us: int,
    event_type: str | None,
) -> None:
    """Per type: FAILED events due now, those due since before ``overdue_before_us``, the most overdue."""
    es = event_state.alias("due")
    due = (es.c.event_type == state_totals.c.event_type, es.c.state == State.FAILED,
           es.c.next_retry_at_us <= now_us)
    late = (*due, es.c.next_retry_at_us < overdue_before_us)
    query = _per_counter(State.FAILED, event_type).with_only_columns(
        state_totals.c.event_type,
        select(func.count()).where(*due).scalar_subquery().label("due"),
        select(func.count()).where(*late).scalar_subquery().label("overdue"),
        select(es.c.event_id).where(*late).order_by(es.c.next_retry_at_us, es.c.event_id).limit(1)
        .scalar_subquery().label("most_overdue"),
    )
    most_overdue: set[int] = set()
    for counted in conn.execute(query):
        gathered = data[counted.event_type]
        gathered.due, gathered.overdue = int(counted.due), int(counted.overdue)
        if counted.most_overdue is not None:
            most_overdue.add(int(counted.most_overdue))
    for row in _rows_by_id(conn, most_overdue):
        data[row.event_type].most_overdue = _mark(row, row.next_retry_at_us, now_us)


def _read_backlog(
    conn: Connection, data: Mapping[str, _Gathered], *, now_us: int, after_us: int, critical_us: int,
    event_type: str | None,
) -> None:
    """Per type: PENDING events due by now, those waiting (with no attempt since they became PENDING:
    ``due_at``) longer than the backlog thresholds, and the longest wait. A range of ``ix_event_state_due``
    up to now: it holds only outstanding work (PENDING and FAILED rows), never resolved history."""
    es = event_state
    query = (
        select(es.c.event_type, func.count(),
               func.sum(case((es.c.due_at_us < now_us - after_us, 1), else_=0)),
               func.sum(case((es.c.due_at_us < now_us - critical_us, 1), else_=0)),
               func.min(es.c.due_at_us))
        .where(es.c.due_at_us <= now_us, es.c.state == State.PENDING)
        .group_by(es.c.event_type)
    )
    for kind, due, backlog, critical, oldest in conn.execute(_where_type(query, es.c.event_type, event_type)):
        gathered = data[kind]
        gathered.pending_due, gathered.backlog, gathered.backlog_critical = int(due), int(backlog or 0), int(
            critical or 0)
        gathered.oldest_waiting_us = None if oldest is None else int(oldest)


def _read_stuck_claims(
    conn: Connection, data: Mapping[str, _Gathered], *, now_us: int, event_type: str | None
) -> None:
    """IN_FLIGHT events whose lease expired (ix_event_state_lease range), counted per type, oldest first."""
    es = event_state
    query = (
        _mark_query(select(es))
        .where(es.c.state == State.IN_FLIGHT, es.c.lease_expires_at_us < now_us)
        .order_by(es.c.lease_expires_at_us, es.c.event_id)
    )
    for row in conn.execute(query):
        if event_type is not None and row.event_type != event_type:
            continue
        gathered = data[row.event_type]
        gathered.stuck += 1
        if gathered.oldest_stuck is None:
            gathered.oldest_stuck = _mark(row, row.lease_expires_at_us, now_us)


def _read_recent_deaths(
    conn: Connection, data: Mapping[str, _Gathered], *, since_us: int, now_us: int, event_type: str | None
) -> None:
    """Distinct events per type that moved to DEAD within the window (ix_transition_to_at range).

    The type comes from a per-row primary-key lookup, so the planner always starts from the window of
    transitions (a join could start from every event of the type instead).
    """
    kind_of = select(event_detected.c.event_type).where(event_detected.c.id == transition.c.event_id)
    deaths = (
        select(transition.c.event_id, kind_of.scalar_subquery().label("event_type"))
        .where(transition.c.to_state == State.DEAD, transition.c.at_us >= since_us,
               transition.c.at_us <= now_us)
        .subquery()
    )
    query = select(deaths.c.event_type, func.count(distinct(deaths.c.event_id))).group_by(deaths.c.event_type)
    for kind, n in conn.execute(_where_type(query, deaths.c.event_type, event_type)):
        data[kind].dead_recent = int(n)


def _read_unresolved_marks(
    conn: Connection, data: Mapping[str, _Gathered], *, now_us: int, event_type: str | None
) -> None:
    """Per type, the oldest unresolved event and the unresolved event with the most attempts."""
    es = event_state.alias("unresolved")
    same = (es.c.event_type == state_totals.c.event_type, es.c.state == state_totals.c.state)
    query = _per_counter(UNRESOLVED, event_type).with_only_columns(
        select(es.c.event_id).where(*same).order_by(es.c.detected_at_us, es.c.event_id).limit(1)
        .scalar_subquery().label("oldest"),
        select(es.c.event_id).where(*same, es.c.attempt_count >= 1)
        .order_by(es.c.attempt_count.desc(), es.c.event_id.desc()).limit(1)
        .scalar_subquery().label("most_retried"),
    )
    found = conn.execute(query).all()
    for row in _rows_by_id(conn, {r.oldest for r in found if r.oldest is not None}):
        mark = _mark(row, row.detected_at_us, now_us)
        current = data[row.event_type].oldest_unresolved
        if current is None or _mark_key(mark) < _mark_key(current):
            data[row.event_type].oldest_unresolved = mark
    for row in _rows_by_id(conn, {r.most_retried for r in found if r.most_retried is not None}):
        mark = _mark(row, None, now_us)
        current = data[row.event_type].most_retried
        if current is None or (mark.attempt_count, mark.event_id) > (current.attempt_count, current.event_id):
            data[row.event_type].most_retried = mark


def _stored_cluster_window(conn: Connection) -> int | None:
    """The W of the rule ``correlate`` last used, or None when it never ran."""
    return conn.execute(
        select(correlation_state.c.window_us).order_by(correlation_state.c.id).limit(1)
    ).scalar()


def _read_active_clusters(
    conn: Connection, data: Mapping[str, _Gathered], *, since_us: int, event_type: str | None
) -> None:
    """Clusters whose last failure is at or after ``since_us`` (ix_failure_cluster_end range)."""
    fc = failure_cluster
    query = select(fc.c.id, fc.c.event_type, fc.c.window_start_us, fc.c.window_end_us, fc.c.failure_count,
                   fc.c.event_count).where(fc.c.window_end_us >= since_us)
    for row in conn.execute(query):
        if event_type is None or row.event_type == event_type:
            data[row.event_type].clusters.append(ClusterMark(
                id=row.id, event_type=row.event_type, window_start=from_us(row.window_start_us),
                window_end=from_us(row.window_end_us), failure_count=row.failure_count,
                event_count=row.event_count,
            ))


def _mark_query(query: Select[Any]) -> Select[Any]:
    es = event_state
    return query.with_only_columns(
        es.c.event_id, es.c.event_type, es.c.state, es.c.attempt_count, es.c.detected_at_us,
        es.c.next_retry_at_us, es.c.lease_expires_at_us, es.c.claimed_by,
    )


def _mark(row: Row[Any], since_us: int | None, now_us: int) -> EventMark:
    return EventMark(
        event_id=int(row.event_id), event_type=row.event_type, state=State(row.state),
        attempt_count=int(row.attempt_count),
        since=None if since_us is None else from_us(since_us),
        age_seconds=None if since_us is None else max(0, now_us - since_us) / _US,
        claimed_by=row.claimed_by,
    )


def _mark_key(mark: EventMark) -> tuple[Any, int]:
    return (mark.since, mark.event_id)


def _first(marks: Iterable[EventMark | None]) -> EventMark | None:
    """The mark with the earliest ``since`` (ties: the lowest event id)."""
    return min((m for m in marks if m is not None), key=_mark_key, default=None)


def _per_counter(states: State | tuple[State, ...], event_type: str | None) -> Select[Any]:
    """The non-zero counter rows of ``states`` (of one type): they drive one index lookup each."""
    wanted = (states,) if isinstance(states, State) else states
    query = select(state_totals).where(state_totals.c.n > 0, state_totals.c.state.in_(wanted))
    return _where_type(query, state_totals.c.event_type, event_type)


def _rows_by_id(conn: Connection, ids: Iterable[int]) -> list[Row[Any]]:
    """The projection rows of a few events, by primary key."""
    wanted = sorted(ids)
    if not wanted:
        return []
    return list(conn.execute(_mark_query(select(event_state)).where(event_state.c.event_id.in_(wanted))))


def _where_type(query: Select[Any], column: Any, event_type: str | None) -> Select[Any]:
    return query if event_type is None else query.where(column == event_type)


def _micros(seconds: float) -> int:
    return round(seconds * _US)
