"""The ``attempt_total`` counters: attempts per (type, outcome), added to in the same transaction as the
attempts themselves, so ``/metrics`` reads counters and never counts history.

Sharded like ``state_count`` (see ``counters``): a transaction adds to the shard of its process and
thread, in sorted key order, with one multi-row upsert. Derived data: ``recount`` rebuilds it from
``attempt`` and ``verify`` compares the two.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, TextClause, func, select, text

from ..storage.tables import attempt, attempt_total
from .counters import ROWS_PER_STATEMENT, _shard

Key = tuple[str, str]  # (event type, outcome)


def of_rows(rows: Iterable[dict[str, Any]]) -> Counter[Key]:
    """The counter deltas of attempt rows about to be inserted (dicts with ``event_type`` and ``outcome``)."""
    return Counter((str(r["event_type"]), str(r["outcome"])) for r in rows)


def apply(conn: Connection, delta: Counter[Key]) -> None:
    """Add ``delta`` to the counters (rows are created on first use)."""
    items = sorted((k, n) for k, n in delta.items() if n)
    shard = _shard()
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        chunk = items[start:start + ROWS_PER_STATEMENT]
        params: dict[str, Any] = {}
        for i, ((event_type, outcome), n) in enumerate(chunk):
            params.update({f"t{i}": event_type, f"o{i}": outcome, f"h{i}": shard, f"n{i}": n})
        conn.execute(_upsert(len(chunk)), params)


@functools.cache
def _upsert(rows: int) -> TextClause:
    values = ", ".join(f"(:t{i}, :o{i}, :h{i}, :n{i})" for i in range(rows))
    table = attempt_total.name
    return text(
        f"INSERT INTO {table} (event_type, outcome, shard, n) VALUES {values} "
        f"ON CONFLICT (event_type, outcome, shard) DO UPDATE SET n = {table}.n + excluded.n"
    )


def recount(conn: Connection) -> dict[Key, int]:
    """The attempts per (type, outcome) as history has them (what the counters must equal)."""
    a = attempt.c
    rows = conn.execute(select(a.event_type, a.outcome, func.count()).group_by(a.event_type, a.outcome))
    return {(t, o): int(n) for t, o, n in rows}


def stored(conn: Connection) -> dict[Key, int]:
    """The counters as stored (shards summed), without zero totals."""
    t = attempt_total.c
    rows = conn.execute(select(t.event_type, t.outcome, func.sum(t.n)).group_by(t.event_type, t.outcome))
    return {(kind, outcome): int(n) for kind, outcome, n in rows if n}
