"""The ``state_count`` counters: events per (type, state), changed in the same transaction as the states.

A transaction adds its deltas to one shard row per (type, state), chosen by its process and thread, so
workers on PostgreSQL rarely queue on the same row lock; deltas are applied in sorted key order, in one
multi-row upsert (per 16 rows), so concurrent transactions lock rows in one order and cannot deadlock on
each other.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, TextClause, func, select, text

from failure_aware.storage import batch
from failure_aware.storage.tables import COUNTER_SHARDS, event_state, state_count

Key = tuple[str, str]


def moved(event_type: str, old: str | None, new: str) -> Counter[Key]:
    """The counter deltas of one event moving from ``old`` (None when new) to ``new``."""
    delta: Counter[Key] = Counter()
    if old is not None:
        delta[(event_type, old)] -= 1
    delta[(event_type, new)] += 1
    return delta


# The sum ``deferred`` collects, for the thread (context) running the block; None outside one.
_COLLECTING: ContextVar[Counter[Key] | None] = ContextVar("failure_aware_deferred_counters", default=None)


@contextmanager
def deferred(conn: Connection) -> Iterator[None]:
    """Collect the deltas ``apply`` is given inside the block and write their sum once at its end.

    A worker's step records an outcome and claims the next event in one transaction (``Ledger.cycle``):
    summed, the claim's +1 IN_FLIGHT and the outcome's -1 cancel, and one upsert is written, not two.
    The sum is kept in a context variable, not on the connection: a connection broken mid-block must not
    be touched again (SQLAlchemy refuses it until rolled back), and another thread's transactions must
    never add to it. Nothing is written when the block raises.
    """
    collected: Counter[Key] = Counter()
    token = _COLLECTING.set(collected)
    try:
        yield
    finally:
        _COLLECTING.reset(token)
    apply(conn, collected)


def apply(conn: Connection, delta: Counter[Key] | Iterable[tuple[Key, int]]) -> None:
    """Add ``delta`` to the counters (rows are created on first use), or to the sum being collected by
    ``deferred``."""
    pairs = delta.items() if isinstance(delta, Counter) else delta
    collecting = _COLLECTING.get()
    if collecting is not None:
        for key, n in pairs:
            collecting[key] += n
        return
    add_sharded(conn, state_count.name, "state", pairs)


def add_sharded(conn: Connection, table: str, column: str, pairs: Iterable[tuple[Key, int]]) -> None:
    """Add ``((event_type, <column>), n)`` pairs to the sharded counter ``table`` (``state_count``,
    ``attempt_total``): this process's shard, sorted keys, one multi-row upsert per 16 rows (with the
    transaction's other writes when it batches them, ``storage.batch``)."""
    items = sorted((k, n) for k, n in pairs if n)
    if not items:
        return
    shard = _shard()
    with batch.writes(conn) as out:
        for start in range(0, len(items), ROWS_PER_STATEMENT):
            chunk = items[start:start + ROWS_PER_STATEMENT]
            params: dict[str, Any] = {}
            for i, ((event_type, value), n) in enumerate(chunk):
                params.update({f"t{i}": event_type, f"s{i}": value, f"h{i}": shard, f"n{i}": n})
            out.execute(_upsert(table, column, len(chunk)), params)


# A transaction's deltas are a few rows (a state change: two), written by one multi-row upsert: a single
# statement costs the driver less than an executemany of the same rows. Written as text, built once per
# number of rows: SQLAlchemy does not cache the compiled form of a multi-row ``insert().values([...])``.
# The same SQL works on both backends (SQLite >= 3.24 has PostgreSQL's ON CONFLICT ... excluded).
ROWS_PER_STATEMENT = 16


@functools.cache
def _upsert(table: str, column: str, rows: int) -> TextClause:
    values = ", ".join(f"(:t{i}, :s{i}, :h{i}, :n{i})" for i in range(rows))
    return text(
        f"INSERT INTO {table} (event_type, {column}, shard, n) VALUES {values} "
        f"ON CONFLICT (event_type, {column}, shard) DO UPDATE SET n = {table}.n + excluded.n"
    )


def _shard() -> int:
    return (os.getpid() * 1_000_003 + threading.get_ident()) % COUNTER_SHARDS


def recount(conn: Connection) -> dict[Key, int]:
    """The counts as the projection has them now (what the counters must equal)."""
    es = event_state
    counts = select(es.c.event_type, es.c.state, func.count()).group_by(es.c.event_type, es.c.state)
    rows = conn.execute(counts)
    return {(t, s): int(n) for t, s, n in rows}


def stored(conn: Connection) -> dict[Key, int]:
    """The counters as stored (shards summed), without zero totals."""
    sc = state_count
    totals = select(sc.c.event_type, sc.c.state, func.sum(sc.c.n)).group_by(sc.c.event_type, sc.c.state)
    rows = conn.execute(totals)
    return {(t, s): int(n) for t, s, n in rows if n}
