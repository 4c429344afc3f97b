"""The derived correlation tables: ``failure_cluster`` rows and the one ``correlation_state`` row.

Only ``engine`` writes through these functions (SPEC 7: clusters change only in ``correlate``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.dialects.postgresql.base import PGDialect

from failure_aware.correlation.failures import tops_json
from failure_aware.correlation.rule import US_PER_SECOND, Rule, Span, cluster_id, is_active
from failure_aware.correlation.sql import Sql, batches
from failure_aware.domain.cluster_records import Cluster, FingerprintCount
from failure_aware.domain.timeutil import from_us
from failure_aware.storage.tables import attempt, correlation_state, failure_cluster

# A stored cluster's content apart from its id (which already names type, start and rule).
Signature = tuple[int, int, int, str]
_SIGNATURE = "id, window_end_us, failure_count, event_count, top_fingerprints, window_start_us"


@dataclass(frozen=True)
class CorrelationState:
    """What the last ``correlate`` left: its rule, the last attempt id it read, how many clusters."""

    rule: Rule
    last_attempt_id: int
    cluster_count: int


def load_state(conn: Connection) -> CorrelationState | None:
    """The remembered rule and watermark, or None before the first ``correlate``."""
    row = conn.execute(select(correlation_state).where(correlation_state.c.id == 1)).first()
    if row is None:
        return None
    rule = Rule(row.window_us // US_PER_SECOND, row.min_failures, row.min_events)
    return CorrelationState(rule, row.last_attempt_id, row.cluster_count)


def save_state(conn: Connection, state: CorrelationState, now_us: int) -> None:
    """Remember the rule, watermark and cluster count (the row is created by the first run)."""
    rule = state.rule
    values = {
        "window_us": rule.window_us, "min_failures": rule.min_failures, "min_events": rule.min_events,
        "last_attempt_id": state.last_attempt_id, "cluster_count": state.cluster_count,
        "updated_at_us": now_us,
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


_LOWEST, _HIGHEST = -(2**63), 2**63 - 1  # an open bound, as a value both backends compare with bigint
SQLITE_RANGES = 16  # ranges per statement on SQLite (``sql.batches``)


def signatures_of_ranges(
    sql: Sql, ranges: Sequence[tuple[str, int | None, int | None]], starts: dict[str, int] | None = None
) -> list[dict[str, Signature]]:
    """For each ``(type, lo, hi)`` range (None: unbounded), bounded by clean cuts: its stored clusters,
    id -> content; in one statement (SQLite: ``SQLITE_RANGES`` per statement at most).

    Read as a range of starts on ``(event_type, window_start_us)``: no stored cluster crosses a clean cut
    of the new data (it is a clean cut of the stored clusters' data too, a subset; see ``engine``), so a
    cluster that reaches into the range starts in it. ``starts``, if given, gets each cluster's
    ``window_start`` (incidents follow the clusters a run removes or changes).
    """
    bounds = [(t, _LOWEST if lo is None else lo, _HIGHEST if hi is None else hi) for t, lo, hi in ranges]
    found: list[dict[str, Signature]] = [{} for _ in ranges]
    if sql.postgres:
        # One index range scan per range. A join (or a LATERAL subquery, which the planner flattens into
        # one) hashes the whole table instead: 12 ms against 0.3 ms at 44k clusters. OFFSET 0 keeps the
        # subquery as it is written.
        query = (
            "SELECT r.k - 1, c.* FROM unnest(?::text[], ?::bigint[], ?::bigint[]) WITH ORDINALITY"
            f" AS r (t, lo, hi, k) CROSS JOIN LATERAL (SELECT {_SIGNATURE} FROM failure_cluster"
            " WHERE event_type = r.t AND window_start_us >= r.lo AND window_start_us <= r.hi OFFSET 0) AS c"
        )
        rows = sql.all(query, [list(column) for column in zip(*bounds, strict=True)])
    else:
        rows = []
        for offset, count in batches(len(bounds), SQLITE_RANGES):
            batch = bounds[offset : offset + count]
            found_here = sql.all(_arms_of_ranges(len(batch)), [x for b in batch for x in b])
            rows += [(offset + r[0], *r[1:]) for r in found_here]
    for k, cid, end_us, failure_count, event_count, tops, start_us in rows:
        found[k][cid] = (end_us, failure_count, event_count, tops)
        if starts is not None:
            starts[cid] = start_us
    return found


@lru_cache(maxsize=8)
def _arms_of_ranges(count: int) -> str:
    """SQLite: ``count`` ranges of ``signatures_of_ranges`` as one statement (cached text: prepared)."""
    return " UNION ALL ".join(
        f"SELECT {k}, {_SIGNATURE} FROM failure_cluster"
        " WHERE event_type = ? AND window_start_us >= ? AND window_start_us <= ?"
        for k in range(count)
    )


def cluster_rows(event_type: str, rule: Rule, spans: Sequence[Span]) -> list[Row_]:
    """``failure_cluster`` rows (``COLUMNS`` order) for spans (with their fingerprint counts)."""
    return [
        (cluster_id(event_type, span.start_us, rule), event_type, span.start_us, span.end_us,
         span.failure_count, span.event_count, tops_json(span.fingerprints), rule.window_seconds,
         rule.min_failures, rule.min_events)
        for span in spans
    ]


def signature(row: Row_) -> Signature:
    """The content of a row built by ``cluster_rows``, comparable with ``signatures``."""
    return (row[3], row[4], row[5], row[6])


# PostgreSQL inserts one array per column, cast to the column's own type.
_PG_DIALECT = PGDialect()  # type: ignore[no-untyped-call]  # (SQLAlchemy leaves its __init__ untyped)
_PG_ARRAYS = ", ".join(
    f"?::{failure_cluster.c[name].type.compile(dialect=_PG_DIALECT)}[]" for name in COLUMNS
)


def insert_rows(sql: Sql, rows: Sequence[Row_]) -> None:
    """Insert cluster rows: PostgreSQL in one statement (one array per column), SQLite row by row in one
    ``executemany`` (no round trips there)."""
    if not rows:
        return
    if sql.postgres:
        sql.run(f"INSERT INTO failure_cluster ({', '.join(COLUMNS)}) SELECT * FROM unnest({_PG_ARRAYS})",
                [list(column) for column in zip(*rows, strict=True)])
    else:
        marks = ", ".join("?" * len(COLUMNS))
        sql.many(f"INSERT INTO failure_cluster ({', '.join(COLUMNS)}) VALUES ({marks})", rows)


def delete_ids(sql: Sql, ids: Iterable[str]) -> None:
    """Delete clusters by id (PostgreSQL: one statement)."""
    if sql.postgres:
        if wanted := list(ids):
            sql.run("DELETE FROM failure_cluster WHERE id = ANY(?::text[])", [wanted])
    else:
        sql.many("DELETE FROM failure_cluster WHERE id = ?", [(i,) for i in ids])


def stored_types(conn: Connection) -> list[str]:
    """The event types that have stored clusters."""
    return list(conn.execute(select(failure_cluster.c.event_type).distinct()).scalars())


def count(conn: Connection) -> int:
    """How many clusters are stored."""
    return int(conn.execute(select(func.count()).select_from(failure_cluster)).scalar_one())


def cluster_from_row(
    row: Row[Any], now_us: int, examples: Mapping[str | None, str | None] | None = None
) -> Cluster:
    """A ``Cluster`` from a ``failure_cluster`` row; ``active`` when it ended within its window of now.

    ``examples``: a message per fingerprint (``queries.examples``); without it the examples are None.
    (Entries are ``[fingerprint, count]``; rows written by pre-release builds carry a third element, an
    example, which is ignored: examples are always read from history.)
    """
    found = examples or {}
    tops = tuple(FingerprintCount(entry[0], entry[1], found.get(entry[0]))
                 for entry in json.loads(row.top_fingerprints))
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
        active=is_active(row.window_end_us, row.window_seconds, now_us),
    )
