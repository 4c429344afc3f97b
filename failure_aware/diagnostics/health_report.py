"""The health report (SPEC section 6): its records and the verdict rules, as pure code (no I/O).

``health.compute_health`` gathers the figures from the database; ``judge`` turns one set of figures into
reasons, each a sentence with its numbers and the level it calls for. The verdict is the worst level among
the reasons (``OK`` when there are none), and the CLI's exit code follows it: 0, 1, 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from failure_aware.domain.durations import format_duration
from failure_aware.domain.health_rules import HealthRules
from failure_aware.domain.records import Record
from failure_aware.domain.states import State

if TYPE_CHECKING:
    from failure_aware.domain.cluster_records import Incident

__all__ = [
    "ClusterMark",
    "EventMark",
    "HealthFigures",
    "HealthReport",
    "Reason",
    "Verdict",
    "judge",
    "worst",
]


class Verdict(StrEnum):
    """How the work is going; ordered OK < DEGRADED < CRITICAL."""

    OK = "OK"
    DEGRADED = "DEGRADED"
    CRITICAL = "CRITICAL"

    @property
    def exit_code(self) -> int:
        """The CLI exit code of this verdict: 0, 1, 2."""
        return _ORDER.index(self)


_ORDER = (Verdict.OK, Verdict.DEGRADED, Verdict.CRITICAL)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of ``verdicts`` (``OK`` for none)."""
    return max(verdicts, key=_ORDER.index, default=Verdict.OK)


@dataclass(frozen=True)
class Reason(Record):
    """One finding behind a verdict: the rule that fired, the level it calls for, and a sentence."""

    verdict: Verdict
    rule: str  # stable name: stuck_claims, overdue_retries, backlog, failure_rate, recent_deaths,
    # active_clusters
    message: str
    event_type: str | None = None  # set when the finding is about one event type only


@dataclass(frozen=True)
class EventMark(Record):
    """An event the report points at. ``since`` is when the age starts (detection for the oldest
    unresolved event, ``next_retry_at`` for an overdue retry, the lease expiry for a stuck claim)."""

    event_id: int
    event_type: str
    state: State
    attempt_count: int
    since: datetime | None = None
    age_seconds: float | None = None
    claimed_by: str | None = None


@dataclass(frozen=True)
class ClusterMark(Record):
    """An active failure cluster (SPEC 7): ``window_end >= now - W``."""

    id: str
    event_type: str
    window_start: datetime
    window_end: datetime
    failure_count: int
    event_count: int


@dataclass(frozen=True)
class HealthFigures(Record):
    """Everything health measures, for all event types (``event_type`` None) or for one."""

    event_type: str | None
    verdict: Verdict
    reasons: tuple[Reason, ...]
    counts: Mapping[str, int]  # events by state, every state present (from the state_count counters)
    total_events: int
    attempts: int  # in the rate window
    failures: int  # failed or abandoned attempts in the rate window
    failure_rate: float | None  # failures / attempts; None without attempts
    retries_due: int  # FAILED with next_retry_at <= now
    overdue_retries: int  # due for more than overdue_after
    due: int  # work due now: PENDING events and FAILED ones whose next_retry_at has come (SPEC 6)
    backlog: int  # PENDING with no attempt for more than backlog_after
    backlog_critical: int  # ... for more than critical_backlog
    oldest_waiting_seconds: float | None  # how long the longest-waiting PENDING event has waited
    most_overdue: EventMark | None
    stuck_claims: int  # IN_FLIGHT with an expired lease
    oldest_stuck: EventMark | None
    dead: int
    dead_recent: int  # distinct events that moved to DEAD within the dead window
    oldest_unresolved: EventMark | None  # PENDING, IN_FLIGHT or FAILED, earliest detected
    most_retried: EventMark | None  # the unresolved event with the most attempts (at least one)
    active_clusters: tuple[ClusterMark, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = super().as_dict()
        data["counts"] = dict(self.counts)
        return data


@dataclass(frozen=True)
class HealthReport(Record):
    """The health of a ledger at ``checked_at``: the verdict, its reasons, overall and per event type.

    ``event_type`` is the type the report was restricted to (None: all types). ``cluster_window_seconds``
    is the W of the stored correlation rule (None when ``correlate`` never ran: no cluster is active).
    """

    verdict: Verdict
    reasons: tuple[Reason, ...]
    checked_at: datetime
    event_type: str | None
    rules: HealthRules
    cluster_window_seconds: float | None
    overall: HealthFigures
    by_type: tuple[HealthFigures, ...]
    active_incidents: tuple[Incident, ...] = ()  # SPEC 13: clusters of several types active together

    @property
    def exit_code(self) -> int:
        """0 for OK, 1 for DEGRADED, 2 for CRITICAL."""
        return self.verdict.exit_code

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339 UTC), with the thresholds the verdict applied."""
        data = super().as_dict()
        data["rules"] = dataclasses.asdict(self.rules)
        data["exit_code"] = self.exit_code
        return data


def judge(figures: HealthFigures, rules: HealthRules) -> tuple[Reason, ...]:
    """The reasons ``figures`` give under ``rules``, most severe first (empty when all is well).

    CRITICAL: a stuck claim; a retry overdue by more than ``critical_overdue``; an event PENDING with no
    attempt for more than ``critical_backlog``; a failure rate of at least ``critical_failure_rate`` over
    at least ``min_attempts_for_rate`` attempts. DEGRADED: a death within the dead window; any overdue
    retry; an event PENDING with no attempt for more than ``backlog_after``; an active cluster; a failure
    rate of at least ``degraded_failure_rate`` over at least ``min_attempts_for_rate`` attempts.
    """
    scope = figures.event_type
    found = [r for r in (_stuck(figures), _overdue(figures, rules), _backlog(figures, rules),
                         failure_rate_reason(figures, rules), _deaths(figures, rules), _clusters(figures))
             if r is not None]
    found = [dataclasses.replace(r, event_type=scope) for r in found]
    return tuple(sorted(found, key=lambda r: -_ORDER.index(r.verdict)))


def failure_rate_reason(figures: HealthFigures, rules: HealthRules) -> Reason | None:
    """The failure-rate rule alone (the overall report also applies it to each type)."""
    rate = figures.failure_rate
    if rate is None or figures.attempts < rules.min_attempts_for_rate:
        return None
    if rate >= rules.critical_failure_rate:
        level, threshold = Verdict.CRITICAL, rules.critical_failure_rate
    elif rate >= rules.degraded_failure_rate:
        level, threshold = Verdict.DEGRADED, rules.degraded_failure_rate
    else:
        return None
    return Reason(
        level, "failure_rate",
        f"{_scope(figures)}failure rate {rate:.1%} over the last {_span(rules.rate_window_seconds)} "
        f"({figures.failures} of {figures.attempts} attempts failed) is at least {threshold * 100:g}%",
    )


def _stuck(figures: HealthFigures) -> Reason | None:
    n = figures.stuck_claims
    if not n:
        return None
    oldest = figures.oldest_stuck
    detail = ""
    if oldest is not None:
        detail = (f"; oldest: event {oldest.event_id} ({oldest.event_type}) claimed by "
                  f"{oldest.claimed_by or 'unknown'}, lease expired {_ago(oldest)} ago")
    return Reason(
        Verdict.CRITICAL, "stuck_claims",
        f"{_scope(figures)}{_count(n, 'claim')} {_is(n)} stuck: the lease expired without an outcome "
        f"(did a worker die mid-attempt?){detail}. Run `failure-aware recover`",
    )


def _overdue(figures: HealthFigures, rules: HealthRules) -> Reason | None:
    n, late = figures.overdue_retries, figures.most_overdue
    if not n or late is None:
        return None
    critical = (late.age_seconds or 0.0) > rules.critical_overdue_seconds
    limit = rules.critical_overdue_seconds if critical else rules.overdue_after_seconds
    return Reason(
        Verdict.CRITICAL if critical else Verdict.DEGRADED, "overdue_retries",
        f"{_scope(figures)}{_count(n, 'retry', 'retries')} {_is(n)} overdue (due for more than "
        f"{_span(rules.overdue_after_seconds)}); the most overdue, event {late.event_id} "
        f"({late.event_type}), has been due for {_ago(late)}, more than {_span(limit)}: is anything running "
        "`failure-aware retry --due` or a worker?",
    )


def _backlog(figures: HealthFigures, rules: HealthRules) -> Reason | None:
    """Events PENDING with no attempt for long: nothing is running the work (SPEC 6)."""
    if figures.backlog_critical:
        level, n, limit = Verdict.CRITICAL, figures.backlog_critical, rules.critical_backlog_seconds
    elif figures.backlog:
        level, n, limit = Verdict.DEGRADED, figures.backlog, rules.backlog_after_seconds
    else:
        return None
    oldest = ""
    if figures.oldest_waiting_seconds is not None:
        oldest = f" (the oldest for {format_duration(max(0, round(figures.oldest_waiting_seconds)))})"
    return Reason(
        level, "backlog",
        f"{_scope(figures)}{_count(n, 'event')} waiting more than {_span(limit)} with no attempt{oldest}: "
        "is a worker running?",
    )


def _deaths(figures: HealthFigures, rules: HealthRules) -> Reason | None:
    if not figures.dead_recent:
        return None
    return Reason(
        Verdict.DEGRADED, "recent_deaths",
        f"{_scope(figures)}{_count(figures.dead_recent, 'event')} died in the last "
        f"{_span(rules.dead_window_seconds)} ({figures.dead} DEAD now)",
    )


def _clusters(figures: HealthFigures) -> Reason | None:
    n = len(figures.active_clusters)
    if not n:
        return None
    newest = max(figures.active_clusters, key=lambda c: c.window_end)
    return Reason(
        Verdict.DEGRADED, "active_clusters",
        f"{_scope(figures)}{_count(n, 'failure cluster')} {_is(n)} active; the latest: "
        f"{newest.failure_count} failures of {newest.event_count} {newest.event_type} events up to "
        f"{newest.window_end.strftime('%Y-%m-%d %H:%M:%SZ')}",
    )


def _scope(figures: HealthFigures) -> str:
    return f"{figures.event_type}: " if figures.event_type else ""


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _is(n: int) -> str:
    return "is" if n == 1 else "are"


def _span(seconds: float) -> str:
    return format_duration(seconds)


def _ago(mark: EventMark) -> str:
    return format_duration(max(0, round(mark.age_seconds or 0.0)))  # whole seconds: an age, not a timing
