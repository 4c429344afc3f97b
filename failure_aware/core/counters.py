"""The ``state_count`` counters: events per (type, state), changed in the same transaction as the states.

A transaction adds its deltas to one shard row per (type, state), chosen by its process and thread, so
workers on PostgreSQL rarely queue on the same row lock; deltas are applied in sorted key order, in one
statement, so concurrent transactions lock rows in one order and cannot deadlock on each other.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..storage.tables import COUNTER_SHARDS, event_state, state_count

Key = tuple[str, str]


def moved(event_type: str, old: str | None, new: str) -> Counter[Key]:
    """The counter deltas of one event moving from ``old`` (None when new) to ``new``."""
    delta: Counter[Key] = Counter()
    if old is not None:
        delta[(event_type, old)] -= 1
    delta[(event_type, new)] += 1
    return delta


def apply(conn: Connection, delta: Counter[Key] | Iterable[tuple[Key, int]]) -> None:
    """Add ``delta`` to the counters (rows are created on first use)."""
    pairs = delta.items() if isinstance(delta, Counter) else delta
    items = sorted((k, n) for k, n in pairs if n)
    if not items:
        return
    rows = [{"event_type": t, "state": s, "shard": _shard(), "n": n} for (t, s), n in items]
    conn.execute(_UPSERT[conn.dialect.name == "postgresql"], rows)


def _upsert(dialect_insert: Any) -> Any:
    ins = dialect_insert(state_count)
    return ins.on_conflict_do_update(
        index_elements=[state_count.c.event_type, state_count.c.state, state_count.c.shard],
        set_={"n": state_count.c.n + ins.excluded.n},
    )


# Built once: the counters change in every transaction that moves an event (executemany of one statement).
_UPSERT = {False: _upsert(sqlite.insert), True: _upsert(postgresql.insert)}


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
