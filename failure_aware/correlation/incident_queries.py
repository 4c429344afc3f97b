"""Reading incidents (SPEC 13): lists, one incident with its clusters, the incidents of some clusters.

Nothing here writes. Incidents are read as ``correlate`` left them (derived data, like clusters).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from failure_aware.correlation.cluster_queries import clusters_with_examples
from failure_aware.correlation.rule import active_since_us, is_active
from failure_aware.correlation.stored import load_state
from failure_aware.domain.cluster_records import Incident, IncidentDetail, SharedFingerprint
from failure_aware.domain.errors import NotFound
from failure_aware.domain.timeutil import from_us
from failure_aware.storage.tables import failure_cluster, incident, incident_cluster


def list_incidents(
    conn: Connection, *, now_us: int, event_type: str | None = None, active: bool = False,
    since_us: int | None = None, limit: int | None = None,
) -> list[Incident]:
    """Stored incidents, newest first; ``active``: one of its clusters ended within W of now; ``since_us``:
    ended at or after it; ``event_type``: one of its clusters is of that type."""
    i = incident.c
    query = select(incident)
    if event_type is not None:
        of_type = (
            select(incident_cluster.c.incident_id)
            .join(failure_cluster, failure_cluster.c.id == incident_cluster.c.cluster_id)
            .where(failure_cluster.c.event_type == event_type)
        )
        query = query.where(i.id.in_(of_type))
    if active:
        state = load_state(conn)
        if state is None:
            return []
        query = query.where(i.end_us >= active_since_us(now_us, state.rule.window_us))
    if since_us is not None:
        query = query.where(i.end_us >= since_us)
    query = query.order_by(i.start_us.desc(), i.id)
    if limit is not None:
        query = query.limit(limit)
    return _incidents(conn, conn.execute(query).all(), now_us)


def get_incident(conn: Connection, incident_id: str, now_us: int) -> Incident:
    """One stored incident; ``NotFound`` (naming how to list them) if there is none with that id."""
    row = conn.execute(select(incident).where(incident.c.id == incident_id)).first()
    if row is None:
        raise NotFound(
            f"no incident with id {incident_id!r}; list them with: failure-aware incidents "
            "(run `failure-aware correlate` to bring them up to date)"
        )
    return _incidents(conn, [row], now_us)[0]


def incident_detail(conn: Connection, incident_id: str, *, now_us: int) -> IncidentDetail:
    """An incident with its clusters (with their example messages); each shared fingerprint gets the
    smallest example among its clusters."""
    found = get_incident(conn, incident_id, now_us)
    fc = failure_cluster.c
    rows = conn.execute(
        select(failure_cluster).where(fc.id.in_(found.cluster_ids))
        .order_by(fc.window_start_us, fc.event_type)
    ).all()
    clusters = clusters_with_examples(conn, rows, now_us)
    examples: dict[str, str] = {}
    for cluster in clusters:
        for top in cluster.top_fingerprints:
            if top.fingerprint is not None and top.example is not None:
                known = examples.get(top.fingerprint)
                examples[top.fingerprint] = top.example if known is None else min(known, top.example)
    shared = tuple(SharedFingerprint(s.fingerprint, s.clusters, s.failures, examples.get(s.fingerprint))
                   for s in found.shared_fingerprints)
    return IncidentDetail(incident=dataclasses.replace(found, shared_fingerprints=shared),
                          clusters=tuple(clusters))


def incidents_of_clusters(conn: Connection, cluster_ids: Iterable[str]) -> list[str]:
    """The ids of the incidents holding any of these clusters, sorted."""
    wanted = sorted(set(cluster_ids))
    if not wanted:
        return []
    ic = incident_cluster.c
    found = conn.execute(select(ic.incident_id).distinct().where(ic.cluster_id.in_(wanted))).scalars()
    return sorted(found)


def _incidents(conn: Connection, rows: Sequence[Row[Any]], now_us: int) -> list[Incident]:
    """Incidents from their rows, with their cluster ids (earliest first), read for all of them at once."""
    ids = [row.id for row in rows]
    members: dict[str, list[str]] = {iid: [] for iid in ids}
    if ids:
        ic, fc = incident_cluster.c, failure_cluster.c
        query = (
            select(ic.incident_id, ic.cluster_id)
            .join(failure_cluster, fc.id == ic.cluster_id)
            .where(ic.incident_id.in_(ids))
            .order_by(fc.window_start_us, fc.event_type)
        )
        for iid, cid in conn.execute(query):
            members[iid].append(cid)
    return [
        Incident(
            id=row.id, start=from_us(row.start_us), end=from_us(row.end_us), cluster_count=row.cluster_count,
            failure_count=int(row.failure_count), event_count=int(row.event_count),
            event_types=tuple(kind for kind, _ in json.loads(row.event_types)),
            cluster_ids=tuple(members[row.id]),
            shared_fingerprints=tuple(SharedFingerprint(f, int(c), int(n))
                                      for f, c, n in json.loads(row.shared_fingerprints)),
            window_seconds=int(row.window_seconds),
            active=is_active(row.end_us, int(row.window_seconds), now_us),
        )
        for row in rows
    ]


__all__ = ["get_incident", "incident_detail", "incidents_of_clusters", "list_incidents"]
