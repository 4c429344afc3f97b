"""Reading failures for correlation: every query goes through the partial index ``ix_attempt_failures``.

The failure condition is written as the literal SQL of the index's own ``WHERE`` (``FAILURE_SQL``): with
bound parameters instead, SQLite (and PostgreSQL's generic plans) cannot prove that the query implies the
index predicate and would scan the whole table. Statements run through ``sql.Sql`` (see there why).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import text

from failure_aware.correlation.rule import FingerprintCounts, ranked
from failure_aware.correlation.sql import STREAM_CHUNK, Sql, batches, bounded
from failure_aware.storage.tables import FAILURE_SQL

FAILURE = text("attempt." + FAILURE_SQL)  # for SQLAlchemy Core queries (``queries``)
TOP_FINGERPRINTS = 5
SPAN_BATCH = 1000  # spans per aggregate statement on PostgreSQL
SQLITE_ARMS = 8  # spans per aggregate statement on SQLite (measured at 1M: 4-8 about 10 % faster than 1)
WALK_PAGE = 16  # a clean cut is usually a few failures away; then pages 4x and 32x larger; then streaming
WALK_CHUNK = 1024  # failures fetched at a time by a streaming walk on SQLite (``walk``)
SQLITE_POINTS = 16  # points or spans per SQLite statement (``sql.batches``; at most 500 arms in all)

Failure = tuple[int, int, str | None]  # (at_us, event_id, fingerprint)
# The columns of ix_attempt_failures: reading only these is an index-only scan.
_COLUMNS = "at_us, event_id, fingerprint"
# Failures before the retention horizon are not looked at (SPEC 15: an archive may have removed some of
# them, so what remains there is no longer the whole story). An uncorrelated subquery: evaluated once per
# statement, it bounds the index range like a parameter would; 0 (1970) before any archive.
HORIZON_SQL = "(SELECT COALESCE(MAX(horizon_us), 0) FROM retention_horizon)"
_OF_TYPE = f"FROM attempt WHERE {FAILURE_SQL} AND event_type = ? AND at_us >= {HORIZON_SQL}"
# The same for a statement that adds a lower bound of its own on ``at_us``: the horizon becomes a filter
# (``+at_us`` is not an index term). With two lower bounds SQLite's planner seeks at the horizon and tests
# the statement's own bound row by row, which reads every earlier failure of the type (for each span or
# page: 20x the whole cost of counting an incident's events at 1M failures). PostgreSQL takes the higher
# of two bounds itself; a filter costs it nothing here either.
_OF_TYPE_FROM = _OF_TYPE.replace("AND at_us >=", "AND +at_us >=")
# SQLite's compound statements (dozens of arms) take the horizon as a value (``horizon``) instead: the
# subquery in each arm cost a third of such a statement.
_OF_TYPE_AFTER = f"FROM attempt WHERE {FAILURE_SQL} AND event_type = ? AND +at_us >= ?"


def horizon(sql: Sql) -> int:
    """The retention horizon (``HORIZON_SQL``), read once per correlate transaction: on SQLite, where it
    is used as a value, writers are serialised, so no archive moves it under the transaction."""
    if sql.horizon_us is None:
        sql.horizon_us = int(sql.all(HORIZON_SQL[1:-1])[0][0])
    return sql.horizon_us
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


def failing_types(sql: Sql) -> Iterator[str]:
    """Every event type with at least one failure, in order: a loose index scan (one seek per type)."""
    found = sql.all(f"SELECT min(event_type) FROM attempt WHERE {FAILURE_SQL} AND at_us >= {HORIZON_SQL}"
                    )[0][0]
    while found is not None:
        yield found
        found = sql.all(f"SELECT min(event_type) {_OF_TYPE.replace('event_type = ?', 'event_type > ?')}",
                        (found,))[0][0]


def stream(
    sql: Sql, event_type: str, lo: int | None = None, hi: int | None = None, *, exclusive: bool = False
) -> Iterator[tuple[Sequence[int], Sequence[int], Sequence[str | None]]]:
    """The failures of one type with ``lo <= at_us <= hi`` (None: unbounded), in time order, as chunks of
    ``(times, event ids, fingerprints)``: an index-only scan of ``ix_attempt_failures``. ``exclusive``:
    see ``Sql.stream``."""
    source = _OF_TYPE if lo is None else _OF_TYPE_FROM
    query, params = bounded(f"SELECT {_COLUMNS} {source}", [event_type], "at_us", lo, hi)
    for batch in sql.stream(query + " ORDER BY at_us", params, exclusive=exclusive):
        yield list(map(_FIRST, batch)), list(map(_SECOND, batch)), list(map(_THIRD, batch))


Probe = tuple[str, int, int, int]  # (event type, time, failures to read before it, failures from it on)


def neighbourhoods(sql: Sql, probes: Sequence[Probe]) -> list[tuple[list[Failure], list[Failure]]]:
    """For each probe ``(event type, time, before, after)``: up to ``before`` failures of that type before
    the time (nearest first) and up to ``after`` at or after it (in time order). One statement for many
    probes (SQLite: ``SQLITE_POINTS`` at most per statement, two ``UNION ALL`` arms each; PostgreSQL: a
    ``LATERAL`` join)."""
    pages: list[tuple[list[Failure], list[Failure]]] = [([], []) for _ in probes]
    if sql.postgres:
        near = (f"SELECT w.k - 1, {{side}}, n.at_us, n.event_id, n.fingerprint"
                " FROM unnest(?::text[], ?::bigint[], ?::int[], ?::int[]) WITH ORDINALITY"
                " AS w (t, at, before, after, k)"
                f" CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM attempt WHERE {FAILURE_SQL}"
                f" AND at_us >= {HORIZON_SQL}"
                " AND event_type = w.t AND at_us {op} w.at ORDER BY at_us {order} LIMIT w.{limit}) AS n")
        query = (near.format(side=0, op="<", order="DESC", limit="before") + " UNION ALL "
                 + near.format(side=1, op=">=", order="ASC", limit="after"))
        columns = [list(column) for column in zip(*probes, strict=True)]
        for k, side, *failure in sql.all(query, columns + columns):
            pages[k][side].append(tuple(failure))
    else:
        h = horizon(sql)
        for offset, count in batches(len(probes), SQLITE_POINTS):
            batch = probes[offset : offset + count]
            params = [x for t, at, before, after in batch for x in (t, h, at, before, t, h, at, after)]
            for row in sql.all(_arms_around(count), params):
                pages[offset + row[0]][row[1]].append(row[2:])
    for below, above in pages:
        below.sort(key=_FIRST, reverse=True)  # UNION ALL keeps no order of its own (only times matter)
        above.sort(key=_FIRST)
    return pages


@lru_cache(maxsize=8)
def _arms_around(points: int) -> str:
    """SQLite: the two pages around each of ``points`` points as one statement (cached text: prepared)."""
    arm = (f"SELECT {{k}}, {{side}}, {_COLUMNS} FROM (SELECT {_COLUMNS} {_OF_TYPE_AFTER} AND at_us {{op}} ?"
           " ORDER BY at_us {order} LIMIT ?)")
    sides = [(0, "<", "DESC"), (1, ">=", "ASC")]
    return " UNION ALL ".join(
        arm.format(k=k, side=side, op=op, order=order) for k in range(points) for side, op, order in sides
    )


def walk(
    sql: Sql, event_type: str, start_us: int, *, left: bool, n: int
) -> tuple[list[int], Generator[int, None, None]]:
    """The inputs of ``rule.clean_cut`` for a walk from ``start_us`` (a failure time of this type), for
    walks longer than a ``neighbourhood`` page.

    Returns ``behind`` (the n-1 times nearest the start on the other side, the start itself last) and the
    times beyond the start in walk order (close the generator when done).
    """
    if left:  # behind: the first n-1 times >= start, nearest last; ahead: times < start, descending
        near = f"SELECT at_us {_OF_TYPE_FROM} AND at_us >= ? ORDER BY at_us LIMIT ?"
        far = f"SELECT at_us {_OF_TYPE} AND at_us < ? ORDER BY at_us DESC"
    else:
        near = f"SELECT at_us {_OF_TYPE} AND at_us <= ? ORDER BY at_us DESC LIMIT ?"
        far = f"SELECT at_us {_OF_TYPE_FROM} AND at_us > ? ORDER BY at_us"
    behind = [r[0] for r in sql.all(near, (event_type, start_us, n - 1))][::-1]
    # SQLite steps the cursor a chunk at a time: a whole ``STREAM_CHUNK`` reads 10,000 failures on each
    # side for a cut that is usually a few hundred away (issue 15: the walk of one late failure in a
    # chain of 1,437, 8.8 ms, 3.5 in chunks of 1,024). PostgreSQL pays a round trip per chunk.
    chunk = STREAM_CHUNK if sql.postgres else WALK_CHUNK
    return behind, _times(sql.stream(far, (event_type, start_us), chunk=chunk))


def _times(chunks: Iterator[list[Any]]) -> Generator[int, None, None]:
    try:
        for batch in chunks:
            yield from (r[0] for r in batch)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def dirty(sql: Sql, after_id: int, upto_id: int) -> Iterator[tuple[str, int]]:
    """``(event_type, at_us)`` of the failures with ``after_id < id <= upto_id``, sorted, without repeats.

    Read through the primary key (the new attempts are few), not the failure index, which has no ``id``:
    the failure test is written with bound parameters on purpose, so the planner cannot pick that index.
    """
    query = (
        "SELECT DISTINCT event_type, at_us FROM attempt WHERE id > ? AND id <= ? AND outcome IN (?, ?)"
        " ORDER BY event_type, at_us"
    )
    for batch in sql.stream(query, (after_id, upto_id, "failed", "abandoned")):
        yield from ((r[0], r[1]) for r in batch)


def fingerprint_counts(
    sql: Sql, event_type: str, spans: Sequence[tuple[int, int]]
) -> list[FingerprintCounts]:
    """For each ``(start_us, end_us)`` span of ``event_type``: how many failures have each fingerprint,
    ranked like ``Span.fingerprints``, counted in SQL (``verify`` checks the scanner's counts with it)."""
    found = _by_fingerprint(sql, [(event_type, lo, hi) for lo, hi in spans], "count(*)")
    return [ranked(dict(groups)) for groups in found]


def examples(sql: Sql, spans: Sequence[tuple[str, int, int]]) -> list[dict[str | None, str | None]]:
    """For each ``(event type, start_us, end_us)`` span: the smallest message of each fingerprint among the
    type's failures in it."""
    return [dict(groups) for groups in _by_fingerprint(sql, spans, "min(a.error)")]


def _by_fingerprint(
    sql: Sql, spans: Sequence[tuple[str, int, int]], aggregate: str
) -> list[list[tuple[str | None, Any]]]:
    """For each ``(event type, lo, hi)`` span: ``(fingerprint, aggregate)`` over the type's failures with
    ``lo <= at_us <= hi``, grouped by fingerprint.

    Each span is an index range lookup. SQLite runs ``SQLITE_ARMS`` of them as one ``UNION ALL`` statement
    (a join with a list of spans makes its planner build a Bloom filter over the whole type, every time);
    PostgreSQL gets ``SPAN_BATCH`` spans per statement through a ``LATERAL`` join (a plain join lets the
    planner hash the whole type).
    """
    groups: list[list[tuple[str | None, Any]]] = [[] for _ in spans]
    if sql.postgres:
        where = f"a.event_type = s.t AND a.at_us >= s.lo AND a.at_us <= s.hi AND a.{FAILURE_SQL}"
        query = (
            "SELECT s.k - 1, g.fingerprint, g.value"  # ORDINALITY counts from 1
            " FROM unnest(?::text[], ?::bigint[], ?::bigint[]) WITH ORDINALITY AS s (t, lo, hi, k)"
            f" CROSS JOIN LATERAL (SELECT a.fingerprint, {aggregate} AS value"
            f" FROM attempt a WHERE {where} GROUP BY a.fingerprint) AS g"
        )
        for offset in range(0, len(spans), SPAN_BATCH):
            batch = spans[offset : offset + SPAN_BATCH]
            for k, fingerprint, value in sql.all(query, [list(c) for c in zip(*batch, strict=True)]):
                groups[offset + k].append((fingerprint, value))
    else:
        for offset, count in batches(len(spans), SQLITE_ARMS):
            batch = spans[offset : offset + count]
            params = [x for span in batch for x in span]
            for k, fingerprint, value in sql.all(_union_of_spans(aggregate, len(batch)), params):
                groups[offset + k].append((fingerprint, value))
    return groups


@lru_cache(maxsize=2 * SQLITE_ARMS)
def _union_of_spans(aggregate: str, arms: int) -> str:
    """``arms`` per-span aggregates as one statement (the same text for the same count: cached, prepared)."""
    where = f"a.event_type = ? AND a.at_us >= ? AND a.at_us <= ? AND a.{FAILURE_SQL}"
    return " UNION ALL ".join(
        f"SELECT {k}, a.fingerprint, {aggregate} FROM attempt a WHERE {where} GROUP BY a.fingerprint"
        for k in range(arms)
    )


def event_sets(
    sql: Sql, spans: Sequence[tuple[str, int, int]], upto_id: int | None = None
) -> list[set[int]]:
    """For each ``(event type, lo, hi)`` span: the distinct events among the type's failures in it (an
    index range each, index-only: incidents count the events of a type's several clusters once).
    ``upto_id``: only failures with ids up to it (what an earlier run saw)."""
    found: list[set[int]] = [set() for _ in spans]
    upto = "" if upto_id is None else " AND a.id <= ?"
    if sql.postgres:
        query = (
            "SELECT s.k - 1, g.event_id FROM unnest(?::text[], ?::bigint[], ?::bigint[]) WITH ORDINALITY"
            " AS s (t, lo, hi, k) CROSS JOIN LATERAL (SELECT DISTINCT a.event_id FROM attempt a"
            " WHERE a.event_type = s.t AND a.at_us >= s.lo AND a.at_us <= s.hi"
            f" AND a.{FAILURE_SQL}{upto}) AS g"
        )
        for offset in range(0, len(spans), SPAN_BATCH):
            batch = spans[offset : offset + SPAN_BATCH]
            params: list[Any] = [list(c) for c in zip(*batch, strict=True)]
            for k, event_id in sql.all(query, params if upto_id is None else [*params, upto_id]):
                found[offset + k].add(event_id)
    else:
        extra = () if upto_id is None else (upto_id,)
        h = horizon(sql)
        for offset, count in batches(len(spans), SQLITE_POINTS):
            batch = spans[offset : offset + count]
            query = _arms_of_events(len(batch), upto.replace("a.", ""))
            for k, event_id in sql.all(query, [x for t, lo, hi in batch for x in (t, h, lo, hi, *extra)]):
                found[offset + k].add(event_id)
    return found


def failure_times(sql: Sql, event_ids: Iterable[int]) -> dict[int, list[int]]:
    """The failure times of some events, by event (``ix_attempt_event``: a few rows each)."""
    wanted = sorted(set(event_ids))
    found: dict[int, list[int]] = {}
    select = "SELECT event_id, at_us FROM attempt WHERE outcome IN ('failed', 'abandoned') AND event_id"
    if sql.postgres:
        rows: list[Any] = sql.all(f"{select} = ANY(?::bigint[])", [wanted]) if wanted else []
    else:
        rows = []
        for offset, count in batches(len(wanted), 256):
            chunk = wanted[offset : offset + count]
            rows += sql.all(f"{select} IN ({', '.join('?' * len(chunk))})", chunk)
    for event_id, at_us in rows:
        found.setdefault(event_id, []).append(at_us)
    return found


@lru_cache(maxsize=16)
def _arms_of_events(arms: int, upto: str = "") -> str:
    """SQLite: ``arms`` spans of ``event_sets`` as one statement (cached text: prepared)."""
    return " UNION ALL ".join(
        f"SELECT {k}, event_id {_OF_TYPE_AFTER} AND at_us >= ? AND at_us <= ?{upto}" for k in range(arms)
    )


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def tops_json(counts: FingerprintCounts) -> str:
    """The stored form of a cluster's top fingerprints: ``[[fingerprint, count], ...]``, at most
    ``TOP_FINGERPRINTS``, most frequent first. (Example messages are read when clusters are shown.)

    Written by hand around cached encodings of the fingerprints: the same text ``json.dumps`` gives
    (compact separators), at a fraction of the cost once per cluster.
    """
    return "[" + ",".join(f"[{_json_string(f)},{int(n)}]" for f, n in counts[:TOP_FINGERPRINTS]) + "]"


@lru_cache(maxsize=4096)
def _json_string(value: str | None) -> str:
    return _JSON.encode(value)
