"""What the archive records say left the database, read back for ``verify`` (SPEC 15).

- the digest part and row count of the removed events' chains: folded into the digest of all history,
  which so stays the same across an archive (``core.chain.Digest``);
- the removed attempts per (type, outcome): ``attempt_total`` keeps counting them (a Prometheus counter
  never goes down), so it must equal the attempts in history plus these;
- where each type's chain of cluster notes starts now (the head of its archived start);
- guard rows left committed (SQLite): a problem, since they would let any DELETE of history through.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from failure_aware.storage import chain
from failure_aware.storage.tables import archive, archive_guard


@dataclass
class Archived:
    """The archive records summed up."""

    parts: list[tuple[str, int, int]] = field(default_factory=list)  # (digest part, chains, rows)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    note_starts: dict[str, chain.Head] = field(default_factory=dict)
    records: int = 0
    guard_rows: int = 0


def archived(conn: Connection) -> Archived:
    """Read every archive record (one per chunk: a few thousand for millions of events)."""
    found = Archived()
    a = archive.c
    for row in conn.execute(select(a.events, a.rows, a.attempts, a.note_heads, a.digest).order_by(a.id)):
        found.records += 1
        if row.events:
            found.parts.append((row.digest, int(row.events), int(row.rows)))
        for event_type, outcome, n in json.loads(row.attempts):
            found.attempts[(event_type, outcome)] += int(n)
        for event_type, (seq, hash_) in json.loads(row.note_heads).items():
            kept = found.note_starts.get(event_type)
            if kept is None or seq > kept.seq:
                found.note_starts[event_type] = chain.Head(int(seq), str(hash_))
    found.guard_rows = int(conn.execute(select(func.count()).select_from(archive_guard)).scalar_one())
    return found
