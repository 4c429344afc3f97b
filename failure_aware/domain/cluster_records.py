"""The records correlation returns: clusters, one cluster in detail, what a ``correlate`` run did, a timeline.

Frozen dataclasses like ``failure_aware.domain.records``: aware UTC datetimes, ``as_dict()`` for JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from failure_aware.domain.records import Annotation, Attempt, Record
from failure_aware.domain.states import State


@dataclass(frozen=True)
class FingerprintCount(Record):
    """One of a cluster's most frequent error fingerprints: how many of its failures have it, and an
    example message (the smallest one, so it does not depend on insertion order)."""

    fingerprint: str | None
    count: int
    example: str | None = None


@dataclass(frozen=True)
class Cluster(Record):
    """A burst of failures of one event type (SPEC 7): ``failure_count`` failures of ``event_count``
    events between ``window_start`` and ``window_end``. ``active`` when ``window_end >= now - W``."""

    id: str
    event_type: str
    window_start: datetime
    window_end: datetime
    failure_count: int
    event_count: int
    top_fingerprints: tuple[FingerprintCount, ...]
    window_seconds: int
    min_failures: int
    min_events: int
    active: bool = False

    @property
    def rule(self) -> str:
        """The rule that found it, in words."""
        return (
            f"at least {self.min_failures} failures within {self.window_seconds}s, "
            f"from at least {self.min_events} distinct events"
        )


@dataclass(frozen=True)
class ClusterEvent(Record):
    """An event with failures inside a cluster's span: its current state and its failures there."""

    event_id: int
    key: str
    state: State
    failures: int


@dataclass(frozen=True)
class ClusterDetail(Record):
    """Everything about one cluster (``clusters show ID``): the rule that fired, the window, the member
    events, their failed attempts inside the window (at most ``attempts_limit``, earliest first; the total
    is ``cluster.failure_count``), and the annotations on its type whose span overlaps the window."""

    cluster: Cluster
    rule: str
    events: tuple[ClusterEvent, ...]
    attempts: tuple[Attempt, ...]
    annotations: tuple[Annotation, ...] = ()
    attempts_truncated: bool = False


@dataclass(frozen=True)
class CorrelateReport(Record):
    """What one ``correlate`` run did.

    ``mode`` is ``rebuild`` (every cluster recomputed) or ``incremental`` (only around failures recorded
    since the last run). ``added``/``removed``/``changed``/``unchanged`` compare the clusters recomputed
    with those stored before; ``failures_read`` counts the failures read to do it (the new ones included);
    ``clusters_total`` is how many clusters are stored afterwards; ``last_attempt_id`` the attempt id up to
    which history has now been correlated. ``incidents_*`` compare the incidents (SPEC 13) recomputed
    around the changed clusters with those stored before, the same way.
    """

    mode: str
    window_seconds: int
    min_failures: int
    min_events: int
    added: int
    removed: int
    changed: int
    unchanged: int
    failures_read: int
    types_touched: tuple[str, ...]
    clusters_total: int
    last_attempt_id: int
    incidents_added: int = 0
    incidents_removed: int = 0
    incidents_changed: int = 0
    incidents_unchanged: int = 0


@dataclass(frozen=True)
class TimelineRow(Record):
    """One event type on the timeline: failures per bucket, and its clusters' spans in the range."""

    event_type: str
    counts: tuple[int, ...]
    clusters: tuple[Cluster, ...]


@dataclass(frozen=True)
class Timeline(Record):
    """Failures per time bucket per event type (``clusters --timeline``); bucket ``i`` covers
    ``[start + i * bucket_seconds, start + (i + 1) * bucket_seconds)``."""

    start: datetime | None
    end: datetime | None
    bucket_seconds: float
    rows: tuple[TimelineRow, ...]


@dataclass(frozen=True)
class SharedFingerprint(Record):
    """Evidence of an incident: an error fingerprint among the top fingerprints of ``clusters`` of its
    clusters (two at least), ``failures`` of their failures having it, and an example message (in
    ``incidents show``: the smallest example among those clusters)."""

    fingerprint: str
    clusters: int
    failures: int
    example: str | None = None


@dataclass(frozen=True)
class Incident(Record):
    """Clusters of several event types that started together (SPEC 13): linked when their starts are at
    most ``window_seconds`` apart, in chains. ``start``/``end``: the earliest ``window_start`` and the
    latest ``window_end`` of its clusters; ``event_count``: distinct events among their failures.
    ``active`` when one of its clusters is (``end >= now - W``)."""

    id: str
    start: datetime
    end: datetime
    cluster_count: int
    failure_count: int
    event_count: int
    event_types: tuple[str, ...]
    cluster_ids: tuple[str, ...]
    shared_fingerprints: tuple[SharedFingerprint, ...]
    window_seconds: int
    active: bool = False


@dataclass(frozen=True)
class IncidentDetail(Record):
    """One incident with its clusters (earliest first; ties by event type), as ``clusters`` shows them."""

    incident: Incident
    clusters: tuple[Cluster, ...]
