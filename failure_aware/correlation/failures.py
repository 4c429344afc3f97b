"""Reading failures for correlation: every query goes through the partial index ``ix_attempt_failures``.

The failure condition is written as the literal SQL of the index's own ``WHERE`` (``FAILURE_SQL``): with
bound parameters instead, SQLite (and PostgreSQL's generic plans) cannot prove that the query implies the
index predicate and would scan the whole table. Statements run through ``sql.Sql`` (see there why).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Generator, Iterator, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import text

from ..storage.tables import FAILURE_SQL
from .sql import Sql, bounded

FAILURE = text("attempt." + FAILURE_SQL)  # for SQLAlchemy Core queries (``queries``)
TOP_FINGERPRINTS = 5
EXAMPLE_CHARS = 300
SPAN_BATCH = 1000  # spans per aggregate statement on PostgreSQL
SQLITE_ARMS = 8  # spans per aggregate statement on SQLite (measured at 1M: 4-8 about 10 % faster than 1)
WALK_PAGE = 64  # a clean cut is usually a few dozen failures away; then a page 8x larger; then streaming

TopFingerprints = list[tuple[str | None, int, str | None]]
Failure = tuple[int, int]  # (at_us, event_id)
_OF_TYPE = f"FROM attempt WHERE {FAILURE_SQL} AND event_type = ?"
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def failing_types(sql: Sql) -> Iterator[str]:
    """Every event type with at least one failure, in order: a loose index scan (one seek per type)."""
    found = sql.all(f"SELECT min(event_type) FROM attempt WHERE {FAILURE_SQL}")[0][0]
    while found is not None:
        yield found
        found = sql.all(f"SELECT min(event_type) {_OF_TYPE.replace('event_type = ?', 'event_type > ?')}",
                        (found,))[0][0]


def stream(
    sql: Sql, event_type: str, lo: int | None = None, hi: int | None = None
) -> Iterator[tuple[Sequence[int], Sequence[int]]]:
    """The failures of one type with ``lo <= at_us <= hi`` (None: unbounded), in time order, as chunks of
    ``(times, event ids)``."""
    query, params = bounded(f"SELECT at_us, event_id {_OF_TYPE}", [event_type], "at_us", lo, hi)
    for batch in sql.stream(query + " ORDER BY at_us", params):
        yield list(map(_FIRST, batch)), list(map(_SECOND, batch))


def neighbourhood(sql: Sql, event_type: str, at_us: int, page: int) -> tuple[list[Failure], list[Failure]]:
    """In one statement: up to ``page`` failures before ``at_us`` (nearest first) and up to ``page`` at or
    after it (in time order)."""
    query = (
        f"SELECT 0, at_us, event_id FROM (SELECT at_us, event_id {_OF_TYPE} AND at_us < ?"
        " ORDER BY at_us DESC LIMIT ?) AS below UNION ALL "
        f"SELECT 1, at_us, event_id FROM (SELECT at_us, event_id {_OF_TYPE} AND at_us >= ?"
        " ORDER BY at_us LIMIT ?) AS above"
    )
    found = sql.all(query, (event_type, at_us, page, event_type, at_us, page))
    below = [(r[1], r[2]) for r in found if r[0] == 0]
    above = [(r[1], r[2]) for r in found if r[0] == 1]
    below.sort(reverse=True)  # UNION ALL keeps no order of its own
    above.sort()
    return below, above


def walk(
    sql: Sql, event_type: str, start_us: int, *, left: bool, n: int
) -> tuple[list[int], Generator[int, None, None]]:
    """The inputs of ``rule.clean_cut`` for a walk from ``start_us`` (a failure time of this type), for
    walks longer than a ``neighbourhood`` page.

    Returns ``behind`` (the n-1 times nearest the start on the other side, the start itself last) and the
    times beyond the start in walk order (close the generator when done).
    """
    if left:  # behind: the first n-1 times >= start, nearest last; ahead: times < start, descending
        near = f"SELECT at_us {_OF_TYPE} AND at_us >= ? ORDER BY at_us LIMIT ?"
        far = f"SELECT at_us {_OF_TYPE} AND at_us < ? ORDER BY at_us DESC"
    else:
        near = f"SELECT at_us {_OF_TYPE} AND at_us <= ? ORDER BY at_us DESC LIMIT ?"
        far = f"SELECT at_us {_OF_TYPE} AND at_us > ? ORDER BY at_us"
    behind = [r[0] for r in sql.all(near, (event_type, start_us, n - 1))][::-1]
    return behind, _times(sql.stream(far, (event_type, start_us)))


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


def top_fingerprints(sql: Sql, event_type: str, spans: Sequence[tuple[int, int]]) -> list[TopFingerprints]:
    """For each ``(start_us, end_us)`` span of ``event_type``: its most frequent fingerprints.

    Each entry is ``(fingerprint, count, example message)``, most frequent first (ties by fingerprint), at
    most ``TOP_FINGERPRINTS``; the example is the smallest message of that fingerprint in the span, so the
    result depends only on the facts, never on ids or insertion order. Each span is an index range lookup.
    SQLite runs ``SQLITE_ARMS`` of them as one ``UNION ALL`` statement (a join with a list of spans makes
    its planner build a Bloom filter over the whole type, every time); PostgreSQL gets ``SPAN_BATCH``
    spans per statement through a ``LATERAL`` join.
    """
    where = f"a.event_type = ? AND a.at_us >= {{lo}} AND a.at_us <= {{hi}} AND a.{FAILURE_SQL}"
    groups: dict[int, list[tuple[str | None, int, str | None]]] = defaultdict(list)
    if not sql.postgres:
        for offset in range(0, len(spans), SQLITE_ARMS):
            batch = spans[offset : offset + SQLITE_ARMS]
            params = [x for lo, hi in batch for x in (event_type, lo, hi)]
            for k, fingerprint, number, example in sql.all(_union_of_spans(len(batch)), params):
                groups[offset + k].append((fingerprint, number, example))
    else:
        # LATERAL: one index range scan per span (a plain join lets the planner hash the whole type).
        query = (
            "SELECT s.k, g.fingerprint, g.n, g.example"
            " FROM unnest(?::bigint[], ?::bigint[]) WITH ORDINALITY AS s (lo, hi, k)"
            " CROSS JOIN LATERAL (SELECT a.fingerprint, count(*) AS n, min(a.error) AS example"
            f" FROM attempt a WHERE {where.format(lo='s.lo', hi='s.hi')} GROUP BY a.fingerprint) AS g"
        )
        for offset in range(0, len(spans), SPAN_BATCH):
            batch = spans[offset : offset + SPAN_BATCH]
            found = sql.all(query, ([lo for lo, _ in batch], [hi for _, hi in batch], event_type))
            for k, fingerprint, number, example in found:
                groups[offset + k - 1].append((fingerprint, number, example))  # ORDINALITY counts from 1
    return [_ranked(groups.get(k, [])) for k in range(len(spans))]


@lru_cache(maxsize=SQLITE_ARMS)
def _union_of_spans(arms: int) -> str:
    """``arms`` per-span aggregates as one statement (the same text for the same count: cached, prepared)."""
    where = f"a.event_type = ? AND a.at_us >= ? AND a.at_us <= ? AND a.{FAILURE_SQL}"
    return " UNION ALL ".join(
        f"SELECT {k}, a.fingerprint, count(*), min(a.error) FROM attempt a WHERE {where}"
        " GROUP BY a.fingerprint"
        for k in range(arms)
    )


def _ranked(groups: Sequence[tuple[str | None, int, str | None]]) -> TopFingerprints:
    ranked = sorted(groups, key=lambda g: (-g[1], g[0] or ""))[:TOP_FINGERPRINTS]
    return [(f, n, example[:EXAMPLE_CHARS] if example else example) for f, n, example in ranked]


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def tops_json(tops: TopFingerprints) -> str:
    """The stored form of a cluster's top fingerprints: ``[[fingerprint, count, example], ...]``."""
    return _JSON.encode(tops)  # tuples encode as arrays
