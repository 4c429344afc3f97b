"""Failure correlation (SPEC 7): bursts of failures of one event type, as derived ``failure_cluster`` rows.

- ``rule``: the pure rule (``Rule``, ``find_clusters``, ``cluster_id``, ``clean_cut``);
- ``engine``: ``correlate`` / ``rebuild``, the only writer of ``failure_cluster``;
- ``cluster_queries``: read-only listings, one cluster in detail, the clusters of an event, a timeline;
- ``check``: ``clusters_match_rebuild``, the cluster check ``verify`` runs;
- ``linking``, ``incidents``, ``incident_rows``, ``incident_queries``: incidents (SPEC 13), clusters of
  several types that start together, computed by the same ``correlate`` run and checked by ``verify``.
"""

from __future__ import annotations

from failure_aware.correlation.check import clusters_match_rebuild, incidents_match_rebuild
from failure_aware.correlation.rule import Rule, Span, cluster_id, find_clusters
from failure_aware.domain.cluster_records import (
    Cluster,
    ClusterDetail,
    ClusterEvent,
    CorrelateReport,
    FingerprintCount,
    Incident,
    IncidentDetail,
    SharedFingerprint,
    Timeline,
    TimelineRow,
)

__all__ = [
    "Cluster",
    "ClusterDetail",
    "ClusterEvent",
    "CorrelateReport",
    "FingerprintCount",
    "Incident",
    "IncidentDetail",
    "Rule",
    "SharedFingerprint",
    "Span",
    "Timeline",
    "TimelineRow",
    "cluster_id",
    "clusters_match_rebuild",
    "find_clusters",
    "incidents_match_rebuild",
]
