"""Reading clusters: lists, one cluster in detail, the clusters of an event, a timeline. Nothing here writes.

A cluster's members are all failures of its type whose time lies in ``[window_start, window_end]`` (see
``rule``: a cluster never splits equal times), so every query here is a range on ``ix_attempt_failures``.

Each cluster read comes with an example message for each of its top fingerprints: the smallest message of
that fingerprint among the cluster's failures (so it depends only on the facts, never on ids or insertion
order). Examples are read here, for all the clusters of a read together (``failures.examples``), rather than
stored by ``correlate``: finding them there meant reading every member row's message, 40 % of a rebuild
(see docs/correlation.md); a read pays it only for the clusters it returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select

from failure_aware.correlation import failures
from failure_aware.correlation.failures import FAILURE
from failure_aware.correlation.rule import active_since_us
from failure_aware.correlation.sql import Sql
from failure_aware.correlation.stored import cluster_from_row, load_state
from failure_aware.domain.cluster_records import Cluster, ClusterDetail, ClusterEvent, Timeline, TimelineRow
from failure_aware.domain.errors import NotFound
from failure_aware.domain.records import Annotation
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import from_us, to_us
from failure_aware.events.rows import annotation_from_row, attempt_from_row
from failure_aware.storage.tables import annotation, attempt, event_detected, event_state, failure_cluster

DEFAULT_ATTEMPTS_LIMIT = 500
EXAMPLE_CHARS = 300
DEFAULT_BUCKETS = 60


def list_clusters(
    conn: Connection, *, now_us: int, event_type: str | None = None, active: bool = False,
    since_us: int | None = None, limit: int | None = None, after: tuple[int, str, str] | None = None,
    examples: bool = True,
) -> list[Cluster]:
    """Stored clusters, newest first; ``active``: ended within their window of now; ``since_us``: ended
    at or after it; ``after``: the ``(window_start_us, event_type, id)`` of the last cluster of the previous
    page (the list's order is window start descending, then type and id)."""
    c = failure_cluster.c
    query = select(failure_cluster)
    if after is not None:
        start_us, kind, cid = after
        query = query.where(or_(
            c.window_start_us < start_us,
            and_(c.window_start_us == start_us,
                 or_(c.event_type > kind, and_(c.event_type == kind, c.id > cid))),
        ))
    if event_type is not None:
        query = query.where(c.event_type == event_type)
    if active:
        state = load_state(conn)  # every stored cluster has the remembered rule: one indexable bound
        if state is None:
            return []
        query = query.where(c.window_end_us >= active_since_us(now_us, state.rule.window_us))
    if since_us is not None:
        query = query.where(c.window_end_us >= since_us)
    query = query.order_by(c.window_start_us.desc(), c.event_type, c.id)
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    if not examples:
        return [cluster_from_row(row, now_us, {}) for row in rows]
    return clusters_with_examples(conn, rows, now_us)


def get_cluster(conn: Connection, cluster_id: str, now_us: int) -> Cluster:
    """One stored cluster; ``NotFound`` (naming how to list them) if there is none with that id."""
    row = conn.execute(select(failure_cluster).where(failure_cluster.c.id == cluster_id)).first()
    if row is None:
        raise NotFound(
            f"no cluster with id {cluster_id!r}; list them with: failure-aware clusters "
            "(ids change when correlate --rebuild uses another rule)"
        )
    return clusters_with_examples(conn, [row], now_us)[0]


def clusters_with_examples(conn: Connection, rows: Sequence[Row[Any]], now_us: int) -> list[Cluster]:
    """Stored clusters with the example messages of their top fingerprints: the smallest message of each
    among the cluster's failures (cut to ``EXAMPLE_CHARS``), looked up for all of them together."""
    sql = Sql(conn)
    found = failures.examples(sql, [(row.event_type, row.window_start_us, row.window_end_us) for row in rows])
    sql.close()
    return [
        cluster_from_row(row, now_us, {f: _cut(message) for f, message in messages.items()})
        for row, messages in zip(rows, found, strict=True)
    ]


def _cut(message: str | None) -> str | None:
    return message[:EXAMPLE_CHARS] if message else message


def _member_filter(cluster: Cluster) -> list[Any]:
    a = attempt.c
    start_us, end_us = _us(cluster.window_start), _us(cluster.window_end)
    return [FAILURE, a.event_type == cluster.event_type, a.at_us >= start_us, a.at_us <= end_us]


def cluster_detail(
    conn: Connection, cluster_id: str, *, now_us: int, attempts_limit: int = DEFAULT_ATTEMPTS_LIMIT
) -> ClusterDetail:
    """A cluster with its member events, their failures in its window, and its annotations."""
    cluster = get_cluster(conn, cluster_id, now_us)
    a, ed, es = attempt.c, event_detected.c, event_state.c
    members = select(a.event_id, func.count().label("failures")).where(*_member_filter(cluster))
    grouped = members.group_by(a.event_id).subquery()
    events = conn.execute(
        select(grouped.c.event_id, grouped.c.failures, ed.key, es.state)
        .join(event_detected, ed.id == grouped.c.event_id)
        .join(event_state, es.event_id == grouped.c.event_id)
        .order_by(grouped.c.failures.desc(), grouped.c.event_id)
    )
    tries = conn.execute(
        select(attempt).where(*_member_filter(cluster))
        .order_by(a.at_us, a.event_id, a.number).limit(attempts_limit + 1)
    ).all()
    return ClusterDetail(
        cluster=cluster,
        rule=cluster.rule,
        events=tuple(ClusterEvent(r.event_id, r.key, State(r.state), r.failures) for r in events),
        attempts=tuple(attempt_from_row(r) for r in tries[:attempts_limit]),
        annotations=tuple(span_annotations(conn, cluster.event_type, _us(cluster.window_start),
                                           _us(cluster.window_end))),
        attempts_truncated=len(tries) > attempts_limit,
    )


def span_annotations(conn: Connection, event_type: str, start_us: int, end_us: int) -> list[Annotation]:
    """Cluster notes on ``event_type`` whose span overlaps ``[start_us, end_us]`` (SPEC 5), oldest first."""
    n = annotation.c
    rows = conn.execute(
        select(annotation)
        .where(n.cluster_event_type == event_type, n.span_start_us <= end_us, n.span_end_us >= start_us)
        .order_by(n.at_us, n.id)
    )
    return [annotation_from_row(r) for r in rows]


def clusters_of_event(conn: Connection, event_id: int, *, now_us: int) -> list[Cluster]:
    """The clusters holding one of the event's failures (for ``show EVENT_ID``), oldest first.

    Clusters of a type never overlap, so for each failure only the last cluster starting at or before it
    can hold it: one index lookup per failure of the event.
    """
    a, c = attempt.c, failure_cluster.c
    failed = conn.execute(
        select(a.event_type, a.at_us).where(a.event_id == event_id, a.outcome.in_(("failed", "abandoned")))
    ).all()
    found: dict[str, Row[Any]] = {}
    for event_type, at_us in failed:
        row = conn.execute(
            select(failure_cluster)
            .where(c.event_type == event_type, c.window_start_us <= at_us)
            .order_by(c.window_start_us.desc()).limit(1)
        ).first()
        if row is not None and row.window_end_us >= at_us:
            found[row.id] = row
    held = clusters_with_examples(conn, list(found.values()), now_us)
    return sorted(held, key=lambda cluster: (cluster.window_start, cluster.id))


def timeline(
    conn: Connection, *, now_us: int, event_type: str | None = None, buckets: int = DEFAULT_BUCKETS,
    since_us: int | None = None, until_us: int | None = None,
) -> Timeline:
    """Failures per bucket per type over ``[since, until]`` (default: the first to the last failure), with
    the clusters that overlap that range."""
    a = attempt.c
    where = [FAILURE] + ([a.event_type == event_type] if event_type is not None else [])
    if since_us is None or until_us is None:
        first, last = conn.execute(select(func.min(a.at_us), func.max(a.at_us)).where(*where)).one()
        since_us = first if since_us is None else since_us
        until_us = last if until_us is None else until_us
    if since_us is None or until_us is None or until_us < since_us:
        return Timeline(None, None, 0.0, ())
    width = max(1, math.ceil((until_us - since_us + 1) / buckets))
    if width > 1_000_000:  # whole seconds read better on an axis
        width = math.ceil(width / 1_000_000) * 1_000_000
    bucket = ((a.at_us - since_us) // width).label("bucket")  # integer division on both backends
    counts: dict[str, list[int]] = {}
    rows = conn.execute(
        select(a.event_type, bucket, func.count())
        .where(*where, a.at_us >= since_us, a.at_us <= until_us)
        .group_by(a.event_type, bucket)
    )
    for kind, index, number in rows:
        counts.setdefault(kind, [0] * buckets)[min(int(index), buckets - 1)] += number
    spans: dict[str, list[Cluster]] = {}
    c = failure_cluster.c
    cluster_rows = conn.execute(
        select(failure_cluster)
        .where(c.window_end_us >= since_us, c.window_start_us <= until_us,
               *([c.event_type == event_type] if event_type is not None else []))
        .order_by(c.event_type, c.window_start_us)
    ).all()
    for cluster in clusters_with_examples(conn, cluster_rows, now_us):
        spans.setdefault(cluster.event_type, []).append(cluster)
    kinds = sorted(set(counts) | set(spans))
    return Timeline(
        start=from_us(since_us), end=from_us(until_us), bucket_seconds=width / 1_000_000,
        rows=tuple(
            TimelineRow(kind, tuple(counts.get(kind, [0] * buckets)), tuple(spans.get(kind, ())))
            for kind in kinds
        ),
    )


def _us(moment: Any) -> int:
    return to_us(moment)


__all__ = [
    "cluster_detail", "clusters_of_event", "get_cluster", "list_clusters", "span_annotations", "timeline",
]
