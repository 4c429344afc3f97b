"""The derived correlation tables: ``failure_cluster`` rows and the one ``correlation_state`` row.

Only ``engine`` writes through these functions (SPEC 7: clusters change only in ``correlate``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from ..storage.tables import attempt, correlation_state, failure_cluster
from ..timeutil import from_us
from .failures import TopFingerprints, tops_json
from .models import Cluster, FingerprintCount
from .rule import US_PER_SECOND, Rule, Span, cluster_id
from .sql import Sql, bounded

# A stored cluster's content apart from its id (which already names type, start and rule).
Signature = tuple[int, int, int, str]


@dataclass(frozen=True)
class State:
    """What the last ``correlate`` left: its rule and the last attempt id it read."""

    rule: Rule
    last_attempt_id: int


def load_state(conn: Connection) -> State | None:
    """The remembered rule and watermark, or None before the first ``correlate``."""
    row = conn.execute(select(correlation_state).where(correlation_state.c.id == 1)).first()
    if row is None:
        return None
    rule = Rule(row.window_us // US_PER_SECOND, row.min_failures, row.min_events)
    return State(rule, row.last_attempt_id)


def save_state(conn: Connection, rule: Rule, last_attempt_id: int, now_us: int) -> None:
    """Remember the rule and watermark (the row is created by the first run)."""
    values = {
        "window_us": rule.window_us, "min_failures": rule.min_failures, "min_events": rule.min_events,
        "last_attempt_id": last_attempt_id, "updated_at_us": now_us,
    }
    row = correlation_state.c.id == 1
    changed = conn.execute(update(correlation_state).where(row).values(**values)).rowcount
    if changed == 0:
        conn.execute(insert(correlation_state).values(id=1, **values))


def max_attempt_id(conn: Connection) -> int:
    """The highest attempt id (0 with no attempts)."""
    return int(conn.execute(select(func.max(attempt.c.id))).scalar() or 0)


COLUMNS = (
    "id", "event_type", "window_start_us", "window_end_us", "failure_count", "event_count",
    "top_fingerprints", "window_seconds", "min_failures", "min_events",
)
Row_ = tuple[Any, ...]  # a failure_cluster row in COLUMNS order


def signatures(sql: Sql, event_type: str, lo: int | None, hi: int | None) -> dict[str, Signature]:
    """Stored clusters of a type in ``[lo, hi]`` (None: unbounded), which are clean cuts: id -> content.

    Read as a range of starts on ``(event_type, window_start_us)``: no stored cluster crosses a clean cut
    of the new data (it is a clean cut of the stored clusters' data too, a subset; see ``engine``), so a
    cluster that reaches into the range starts in it.
    """
    columns = "id, window_end_us, failure_count, event_count, top_fingerprints"
    query, params = bounded(
        f"SELECT {columns} FROM failure_cluster WHERE event_type = ?", [event_type], "window_start_us", lo, hi
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in sql.all(query, params)}


def cluster_rows(
    event_type: str, rule: Rule, spans: Sequence[Span], tops: Sequence[TopFingerprints]
) -> list[Row_]:
    """``failure_cluster`` rows (``COLUMNS`` order) for spans and their top fingerprints."""
    return [
        (cluster_id(event_type, span.start_us, rule), event_type, span.start_us, span.end_us,
         span.failure_count, span.event_count, tops_json(top), rule.window_seconds, rule.min_failures,
         rule.min_events)
        for span, top in zip(spans, tops, strict=True)
    ]


def signature(row: Row_) -> Signature:
    """The content of a row built by ``cluster_rows``, comparable with ``signatures``."""
    return (row[3], row[4], row[5], row[6])


def insert_rows(sql: Sql, rows: Sequence[Row_]) -> None:
    """Insert cluster rows."""
    marks = ", ".join("?" * len(COLUMNS))
    sql.many(f"INSERT INTO failure_cluster ({', '.join(COLUMNS)}) VALUES ({marks})", rows)


def delete_ids(sql: Sql, ids: Iterable[str]) -> None:
    """Delete clusters by id."""
    sql.many("DELETE FROM failure_cluster WHERE id = ?", [(i,) for i in ids])


def stored_types(conn: Connection) -> list[str]:
    """The event types that have stored clusters."""
    return list(conn.execute(select(failure_cluster.c.event_type).distinct()).scalars())


def count(conn: Connection) -> int:
    """How many clusters are stored."""
    return int(conn.execute(select(func.count()).select_from(failure_cluster)).scalar_one())


def cluster_from_row(row: Row[Any], now_us: int) -> Cluster:
    """A ``Cluster`` from a ``failure_cluster`` row; ``active`` when it ended within its window of now."""
    tops = tuple(FingerprintCount(f, n, example) for f, n, example in json.loads(row.top_fingerprints))
    return Cluster(
        id=row.id,
        event_type=row.event_type,
        window_start=from_us(row.window_start_us),
        window_end=from_us(row.window_end_us),
        failure_count=row.failure_count,
        event_count=row.event_count,
        top_fingerprints=tops,
        window_seconds=row.window_seconds,
        min_failures=row.min_failures,
        min_events=row.min_events,
        active=row.window_end_us >= now_us - row.window_seconds * US_PER_SECOND,
    )
