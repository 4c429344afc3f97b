"""Incidents in ``health`` (SPEC 6, 13): an active incident is a reason, DEGRADED.

Several failure clusters active at once already make the verdict DEGRADED one by one; the incident says
what an operator most wants to know first: that they started together (a shared dependency failing), and
what they share.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from failure_aware.correlation.incident_queries import list_incidents
from failure_aware.diagnostics.health_report import Reason, Verdict
from failure_aware.domain.cluster_records import Incident


def active_incidents(conn: Connection, *, now_us: int, event_type: str | None) -> list[Incident]:
    """The active incidents (of one type's clusters), newest first: an index range on their end."""
    return list_incidents(conn, now_us=now_us, event_type=event_type, active=True)


def incident_reason(incidents: Sequence[Incident]) -> Reason | None:
    """One DEGRADED reason naming the newest active incident (None when none is active)."""
    if not incidents:
        return None
    newest = incidents[0]
    more = f" (and {len(incidents) - 1} more)" if len(incidents) > 1 else ""
    return Reason(
        Verdict.DEGRADED, "active_incidents",
        f"incident {newest.id} is active{more}: {newest.cluster_count} failure clusters of "
        f"{', '.join(newest.event_types)} started together from "
        f"{newest.start.strftime('%Y-%m-%d %H:%M:%SZ')} "
        f"({newest.failure_count} failures); see `failure-aware incidents show {newest.id}`",
    )
