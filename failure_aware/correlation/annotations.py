"""Notes on clusters (SPEC 5): stored against the cluster's event type and time span, not its id.

A rebuild (even with another rule) replaces cluster rows and ids, but the note stays in ``annotation``
(history: append-only) and shows on every cluster of that type whose span overlaps the note's span.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from failure_aware.domain.errors import NotFound
from failure_aware.domain.records import Annotation
from failure_aware.domain.timeutil import from_us
from failure_aware.storage import chain
from failure_aware.storage.tables import annotation, failure_cluster


def annotate_cluster(conn: Connection, cluster_id: str, text: str, *, author: str, now_us: int) -> Annotation:
    """Add a note to the stored cluster ``cluster_id`` (``NotFound`` if there is none)."""
    c = failure_cluster.c
    row = conn.execute(
        select(c.event_type, c.window_start_us, c.window_end_us).where(c.id == cluster_id)
    ).first()
    if row is None:
        raise NotFound(f"no cluster with id {cluster_id!r}; list them with: failure-aware clusters")
    values = {
        "cluster_event_type": row.event_type, "span_start_us": row.window_start_us,
        "span_end_us": row.window_end_us, "cluster_id": cluster_id, "author": author, "at_us": now_us,
        "text": text,
    }
    chain.link_note(conn, row.event_type, values)
    new_id = conn.execute(insert(annotation).values(**values).returning(annotation.c.id)).scalar_one()
    return Annotation(
        id=new_id, author=author, at=from_us(now_us), text=text, cluster_event_type=row.event_type,
        span_start=from_us(row.window_start_us), span_end=from_us(row.window_end_us), cluster_id=cluster_id,
    )
