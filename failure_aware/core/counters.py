"""The ``state_count`` counters: events per (type, state), changed in the same transaction as the states.

Deltas are applied in sorted key order so that concurrent transactions lock counter rows in one order
and cannot deadlock on each other (PostgreSQL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..storage.tables import event_state, state_count

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
    items = sorted((k, n) for k, n in dict(delta).items() if n) if isinstance(delta, Counter) else sorted(
        (k, n) for k, n in delta if n
    )
    if not items:
        return
    ins = postgresql.insert(state_count) if conn.dialect.name == "postgresql" else sqlite.insert(state_count)
    stmt = ins.on_conflict_do_update(
        index_elements=[state_count.c.event_type, state_count.c.state],
        set_={"n": state_count.c.n + ins.excluded.n},
    )
    for (event_type, state), n in items:
        conn.execute(stmt, {"event_type": event_type, "state": state, "n": n})


def recount(conn: Connection) -> dict[Key, int]:
    """The counts as the projection has them now (what the counters must equal)."""
    es = event_state
    rows = conn.execute(select(es.c.event_type, es.c.state, func.count()).group_by(es.c.event_type, es.c.state))
    return {(t, s): int(n) for t, s, n in rows}


def stored(conn: Connection) -> dict[Key, int]:
    """The counters as stored, without zero rows."""
    rows = conn.execute(select(state_count.c.event_type, state_count.c.state, state_count.c.n))
    return {(t, s): int(n) for t, s, n in rows if n}
