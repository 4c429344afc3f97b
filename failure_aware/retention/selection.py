"""What an archive may take (SPEC 15): reads only.

An event leaves only whole and finished: its state is SUCCEEDED or DEAD and none of its transitions or
notes is at or after the horizon (its last activity is before it). PENDING, IN_FLIGHT and FAILED events
stay whatever their age. Cluster notes leave as the start of their type's chain (so the chain that stays
still starts from a known head, kept in the archive record); clusters, derived, are taken along for the
record when they end before the horizon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, func, select

from failure_aware.storage.tables import annotation, event_detected, event_state, failure_cluster, transition

FINISHED = ("SUCCEEDED", "DEAD")


def _where(before_us: int, event_type: str | None) -> list[Any]:
    es, tr, an = event_state.c, transition.c, annotation.c
    conditions = [
        es.state.in_(FINISHED),
        ~exists().where(and_(tr.event_id == es.event_id, tr.at_us >= before_us)),
        ~exists().where(and_(an.event_id == es.event_id, an.at_us >= before_us)),
    ]
    if event_type is not None:
        conditions.append(es.event_type == event_type)
    return conditions


def count(conn: Connection, before_us: int, event_type: str | None) -> int:
    """How many events may leave (for the progress bar's total)."""
    return int(conn.execute(select(func.count()).select_from(event_state)
                            .where(*_where(before_us, event_type))).scalar_one())


def page(conn: Connection, before_us: int, event_type: str | None, after_id: int, span: int
         ) -> tuple[Sequence[Any], int | None]:
    """The events that may leave among the ``span`` ids from the first id above ``after_id``, in id
    order, with what the exporter needs, the head of their chain and the time of their last transition;
    and the last id of that window (the next page starts after it), None when no id is above ``after_id``.

    A window of ids rather than ``LIMIT`` on the events that qualify: with a limit the planner may (and
    PostgreSQL does, stale statistics or not) scan every finished event and anti-join all of
    ``transition`` for each page, so an archive of millions would cost pages times history. A window keeps
    each page's cost to its own ids (primary-key range), whatever the plan; a window may hold no event
    that may leave, and gaps left by earlier archives are jumped over by starting at the next id."""
    ed, es, tr = event_detected.c, event_state.c, transition.c
    first = conn.execute(select(func.min(es.event_id)).where(es.event_id > after_id)).scalar()
    if first is None:
        return [], None
    last = int(first) + span - 1
    last_at = select(func.max(tr.at_us)).where(tr.event_id == es.event_id).scalar_subquery()
    query = (
        select(ed.id, ed.event_type, ed.key, ed.payload, ed.detected_at_us, es.state, es.next_retry_at_us,
               es.chain_seq, es.chain_hash, last_at.label("last_at_us"))
        .join(event_state, es.event_id == ed.id)
        .where(es.event_id.between(int(first), last), *_where(before_us, event_type))
        .order_by(es.event_id)
    )
    return conn.execute(query).all(), last


def note_prefixes(conn: Connection, before_us: int, event_type: str | None) -> list[Row[Any]]:
    """The cluster notes that may leave: per event type, the longest start of its chain of notes whose
    spans end, and which were written, before the horizon; in (type, chain position) order."""
    an = annotation.c
    query = select(annotation).where(an.event_id.is_(None))
    if event_type is not None:
        query = query.where(an.cluster_event_type == event_type)
    taken: list[Row[Any]] = []
    current, open_prefix = None, False
    for row in conn.execute(query.order_by(an.cluster_event_type, an.chain_seq)):
        if row.cluster_event_type != current:
            current, open_prefix = row.cluster_event_type, True
        if open_prefix and row.span_end_us < before_us and row.at_us < before_us:
            taken.append(row)
        else:
            open_prefix = False
    return taken


def clusters_before(conn: Connection, before_us: int) -> list[Row[Any]]:
    """The stored clusters that end before the horizon (of every type: the horizon is one for all)."""
    fc = failure_cluster.c
    return list(conn.execute(select(failure_cluster).where(fc.window_end_us < before_us)
                             .order_by(fc.event_type, fc.window_start_us)))
