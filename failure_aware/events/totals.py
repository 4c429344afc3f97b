"""The ``attempt_total`` counters: attempts per (type, outcome), added to in the same transaction as the
attempts themselves, so ``/metrics`` reads counters and never counts history.

Sharded like ``state_count`` (see ``counters``): a transaction adds to the shard of its process and
thread, in sorted key order, with one multi-row upsert. Derived data: ``recount`` rebuilds it from
``attempt`` and ``verify`` compares the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from failure_aware.events import counters
from failure_aware.storage.tables import attempt, attempt_total

Key = tuple[str, str]  # (event type, outcome)


def of_rows(rows: Iterable[dict[str, Any]]) -> Counter[Key]:
    """The counter deltas of attempt rows about to be inserted (dicts with ``event_type`` and ``outcome``)."""
    return Counter((str(r["event_type"]), str(r["outcome"])) for r in rows)


def apply(conn: Connection, delta: Counter[Key]) -> None:
    """Add ``delta`` to the counters (rows are created on first use)."""
    counters.add_sharded(conn, attempt_total.name, "outcome", delta.items())


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
