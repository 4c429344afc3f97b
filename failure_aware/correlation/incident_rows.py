"""The derived incident tables (SPEC 13): ``incident`` rows, ``incident_cluster`` membership, and the
reads of ``failure_cluster`` that incidents are computed from.

Only ``incidents`` (called by ``engine.correlate``) writes through these functions. Statements go through
``sql.Sql`` (plain DB-API, as the rest of correlation's hot paths); lists of ids are one ``= ANY`` array on
PostgreSQL and chunks of ``IN (...)`` on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from failure_aware.correlation.linking import Built, Member, member_from_row
from failure_aware.correlation.sql import Sql, batches

SQLITE_IDS = 256  # ids per IN list on SQLite (``sql.batches``)
SQLITE_RANGES = 16  # ranges per compound statement on SQLite (``sql.batches``)
_MEMBER = "id, event_type, window_start_us, window_end_us, failure_count, event_count, top_fingerprints"
COLUMNS = ("id", "start_us", "end_us", "cluster_count", "failure_count", "event_count", "event_types",
           "shared_fingerprints", "window_seconds")
Row_ = tuple[Any, ...]  # an incident row in COLUMNS order
Signature = tuple[Any, ...]  # the row without its id

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def incident_row(built: Built, window_seconds: int) -> Row_:
    """The stored form of a computed incident (``COLUMNS`` order)."""
    return (built.id, built.start_us, built.end_us, built.cluster_count, built.failure_count,
            built.event_count, _JSON.encode([list(t) for t in built.event_types]),
            _JSON.encode([list(s) for s in built.shared]), window_seconds)


def _by_ids(sql: Sql, select: str, column: str, ids: Iterable[str]) -> Iterator[Any]:
    """Rows of ``select`` (which ends in a WHERE to extend) for ``column`` in ``ids``."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    if sql.postgres:
        yield from sql.all(f"{select} {column} = ANY(?::text[])", [wanted])
        return
    for offset, count in batches(len(wanted), SQLITE_IDS):
        chunk = wanted[offset : offset + count]
        yield from sql.all(f"{select} {column} IN ({', '.join('?' * len(chunk))})", chunk)


def clusters_by_ids(sql: Sql, ids: Iterable[str]) -> list[Member]:
    """The stored clusters with these ids (ids no longer stored are left out)."""
    select = f"SELECT {_MEMBER} FROM failure_cluster WHERE"
    return [member_from_row(r) for r in _by_ids(sql, select, "id", ids)]


def all_clusters(sql: Sql) -> list[Member]:
    """Every stored cluster (a rebuild of incidents)."""
    return [member_from_row(r) for batch in sql.stream(f"SELECT {_MEMBER} FROM failure_cluster")
            for r in batch]


def clusters_in_order(sql: Sql) -> Iterator[Member]:
    """Every stored cluster in (``window_start``, event type) order, streamed (a rebuild of incidents)."""
    query = f"SELECT {_MEMBER} FROM failure_cluster ORDER BY window_start_us, event_type"
    for batch in sql.stream(query):
        yield from map(member_from_row, batch)


def clusters_starting(sql: Sql, ranges: Sequence[tuple[int, int]]) -> list[Member]:
    """The stored clusters of any type whose ``window_start`` lies in one of the ``[lo, hi]`` ranges (which
    must not overlap): an index range each on ``ix_failure_cluster_start``."""
    if not ranges:
        return []
    if sql.postgres:
        rows = sql.all(
            f"SELECT c.* FROM unnest(?::bigint[], ?::bigint[]) AS r (lo, hi) CROSS JOIN LATERAL"
            f" (SELECT {_MEMBER} FROM failure_cluster WHERE window_start_us >= r.lo"
            " AND window_start_us <= r.hi OFFSET 0) AS c",
            [[lo for lo, _ in ranges], [hi for _, hi in ranges]],
        )
    else:
        rows = []
        for offset, count in batches(len(ranges), SQLITE_RANGES):
            batch = ranges[offset : offset + count]
            rows += sql.all(_arms_of_starts(len(batch)), [x for r in batch for x in r])
    return [member_from_row(r) for r in rows]


@lru_cache(maxsize=8)
def _arms_of_starts(count: int) -> str:
    return " UNION ALL ".join(
        f"SELECT {_MEMBER} FROM failure_cluster WHERE window_start_us >= ? AND window_start_us <= ?"
        for _ in range(count)
    )


def membership(sql: Sql, cluster_ids: Iterable[str]) -> dict[str, str]:
    """cluster id -> incident id, for those of ``cluster_ids`` that belong to an incident."""
    select = "SELECT cluster_id, incident_id FROM incident_cluster WHERE"
    return dict(_by_ids(sql, select, "cluster_id", cluster_ids))


def members_of(sql: Sql, incident_ids: Iterable[str]) -> dict[str, str]:
    """cluster id -> incident id, for every member of these incidents."""
    select = "SELECT cluster_id, incident_id FROM incident_cluster WHERE"
    return dict(_by_ids(sql, select, "incident_id", incident_ids))


def all_membership(sql: Sql) -> dict[str, str]:
    """Every membership row."""
    query = "SELECT cluster_id, incident_id FROM incident_cluster"
    return {cid: iid for batch in sql.stream(query) for cid, iid in batch}


def signatures(sql: Sql, incident_ids: Iterable[str] | None) -> dict[str, Signature]:
    """The stored incidents (all of them for None), id -> the rest of the row."""
    select = f"SELECT {', '.join(COLUMNS)} FROM incident"
    if incident_ids is None:
        rows: Iterable[Any] = (r for batch in sql.stream(select) for r in batch)
    else:
        rows = _by_ids(sql, select + " WHERE", "id", incident_ids)
    return {r[0]: tuple(r[1:]) for r in rows}


def delete(sql: Sql, table: str, column: str, ids: Iterable[str]) -> None:
    """Delete the rows of ``table`` whose ``column`` is in ``ids``."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    if sql.postgres:
        sql.run(f"DELETE FROM {table} WHERE {column} = ANY(?::text[])", [wanted])
    else:
        sql.many(f"DELETE FROM {table} WHERE {column} = ?", [(i,) for i in wanted])


def insert(sql: Sql, table: str, columns: Sequence[str], rows: Sequence[Row_], casts: Sequence[str]) -> None:
    """Insert rows: PostgreSQL in one statement (an array per column, ``casts`` its types), SQLite in one
    ``executemany``."""
    if not rows:
        return
    names = ", ".join(columns)
    if sql.postgres:
        arrays = ", ".join(f"?::{cast}[]" for cast in casts)
        sql.run(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})",
                [list(column) for column in zip(*rows, strict=True)])
    else:
        sql.many(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)


INCIDENT_CASTS = ("text", "bigint", "bigint", "int", "bigint", "bigint", "text", "text", "bigint")
MEMBER_CASTS = ("text", "text")


def clusters_covering(sql: Sql, ranges: Sequence[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """For each ``(event type, lo, hi)``: the type's clusters that may hold a time in ``[lo, hi]``, as
    ``(id, window_start, window_end)``: those starting in it and the last one starting before it (clusters
    of one type never overlap). Index ranges on ``ix_failure_cluster_type_start``."""
    found: list[list[tuple[str, int, int]]] = [[] for _ in ranges]
    if not ranges:
        return found
    if sql.postgres:
        rows = sql.all(
            "SELECT r.k - 1, c.* FROM unnest(?::text[], ?::bigint[], ?::bigint[]) WITH ORDINALITY"
            " AS r (t, lo, hi, k) CROSS JOIN LATERAL ("
            " (SELECT id, window_start_us, window_end_us FROM failure_cluster WHERE event_type = r.t"
            " AND window_start_us < r.lo ORDER BY window_start_us DESC LIMIT 1) UNION ALL"
            " (SELECT id, window_start_us, window_end_us FROM failure_cluster WHERE event_type = r.t"
            " AND window_start_us >= r.lo AND window_start_us <= r.hi)) AS c",
            [list(column) for column in zip(*ranges, strict=True)],
        )
    else:
        rows = []
        for offset, count in batches(len(ranges), SQLITE_RANGES):
            batch = ranges[offset : offset + count]
            params = [x for t, lo, hi in batch for x in (t, lo, t, lo, hi)]
            rows += [(offset + r[0], *r[1:]) for r in sql.all(_arms_covering(len(batch)), params)]
    for k, cid, start_us, end_us in rows:
        found[k].append((cid, start_us, end_us))
    return found


@lru_cache(maxsize=8)
def _arms_covering(count: int) -> str:
    columns = "id, window_start_us, window_end_us"
    return " UNION ALL ".join(
        f"SELECT {k}, * FROM (SELECT {columns} FROM failure_cluster WHERE event_type = ?"
        f" AND window_start_us < ? ORDER BY window_start_us DESC LIMIT 1) UNION ALL SELECT {k}, {columns}"
        " FROM failure_cluster WHERE event_type = ? AND window_start_us >= ? AND window_start_us <= ?"
        for k in range(count)
    )


def rename(sql: Sql, renamed: Mapping[str, str]) -> None:
    """Point every membership row of an incident at its new id (old id -> new id)."""
    if renamed:
        sql.many("UPDATE incident_cluster SET incident_id = ? WHERE incident_id = ?",
                 [(new, old) for old, new in renamed.items()])


def clusters_holding(sql: Sql, incident: str, fingerprints: Sequence[str]) -> list[Member]:
    """The clusters of an incident that may list one of ``fingerprints`` among their top fingerprints (a
    text search of the stored JSON: the caller parses what it gets); none for no fingerprints."""
    if not fingerprints:
        return []
    find = "strpos(c.top_fingerprints, ?) > 0" if sql.postgres else "instr(c.top_fingerprints, ?) > 0"
    # An entry is [fingerprint, count]; rows written by json.dumps' defaults escape non-ASCII text.
    needles = sorted({f"[{encode(fp)}," for fp in fingerprints for encode in (_JSON.encode, json.dumps)})
    return [member_from_row(r) for r in sql.all(
        f"SELECT {', '.join('c.' + c for c in _MEMBER.split(', '))} FROM incident_cluster ic"
        " JOIN failure_cluster c ON c.id = ic.cluster_id"
        f" WHERE ic.incident_id = ? AND ({' OR '.join([find] * len(needles))})", [incident, *needles])]


def extremes(sql: Sql, incident: str, ranges: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The earliest ``window_start`` and latest ``window_end`` of an incident's clusters starting in one of
    the ``[lo, hi]`` ranges (None: there are none)."""
    within = " OR ".join(["(c.window_start_us >= ? AND c.window_start_us <= ?)"] * len(ranges))
    [(start_us, end_us)] = sql.all(
        "SELECT min(c.window_start_us), max(c.window_end_us) FROM incident_cluster ic"
        f" JOIN failure_cluster c ON c.id = ic.cluster_id WHERE ic.incident_id = ? AND ({within})",
        [incident, *(x for r in ranges for x in r)])
    return None if start_us is None else (int(start_us), int(end_us))


def holds_type(sql: Sql, incident: str, event_type: str, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether an incident has a cluster of ``event_type`` starting in one of the ``[lo, hi]`` ranges (the
    type's clusters in those ranges, each looked up in the membership, up to the first found)."""
    within = " OR ".join(["(c.window_start_us >= ? AND c.window_start_us <= ?)"] * len(ranges))
    join = "JOIN" if sql.postgres else "CROSS JOIN"  # SQLite: keep the type's clusters outside
    return bool(sql.all(
        f"SELECT 1 FROM failure_cluster c {join} incident_cluster ic ON ic.cluster_id = c.id"
        f" WHERE c.event_type = ? AND ic.incident_id = ? AND ({within}) LIMIT 1",
        [event_type, incident, *(x for r in ranges for x in r)]))
