"""Writing recomputed clusters: make the stored clusters of a range those just computed.

A range is ``[lo, hi]`` of one type, bounded by clean cuts (or unbounded), so no stored cluster crosses it
(see ``engine``). Stored rows that come out the same are left in place (so an incremental run that changes
little writes little), changed ones are replaced, and rows no longer found are deleted: the table ends as
if the range had been emptied and refilled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from failure_aware.correlation import failures, stored
from failure_aware.correlation.incidents import IncidentTally
from failure_aware.correlation.linking import Member
from failure_aware.correlation.rule import ClusterScanner, Rule, Span
from failure_aware.correlation.sql import Sql

INSERT_BATCH = 1000  # spans per write batch of a streamed range (bounded memory on a rebuild)


class Advance(Protocol):
    """What is told of failures read (``engine.FailureProgress``)."""

    def advance(self, failures: int) -> None: ...


@dataclass
class Tally:
    """What a ``correlate`` run read and wrote (its report)."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    failures_read: int = 0
    types: set[str] = field(default_factory=set)
    # Incidents; with ``track`` (an incremental run) the clusters added, removed or changed are noted there.
    incidents: IncidentTally = field(default_factory=IncidentTally)
    track: bool = False
    progress: Advance | None = None  # told of the failures a rebuild reads (``engine.FailureProgress``)


@dataclass(frozen=True)
class Range:
    """The clusters recomputed for ``[lo, hi]`` of one type (None: unbounded on that side)."""

    event_type: str
    lo: int | None
    hi: int | None
    spans: list[Span]


def replace_ranges(sql: Sql, rule: Rule, ranges: Sequence[Range], tally: Tally) -> None:
    """Write several ranges (of different types) with one read, one DELETE and one INSERT in all."""
    if not ranges:
        return
    starts: dict[str, int] | None = {} if tally.track else None
    befores = stored.signatures_of_ranges(sql, [(r.event_type, r.lo, r.hi) for r in ranges], starts)
    fresh: list[stored.Row_] = []
    stale: list[str] = []
    for found, before in zip(ranges, befores, strict=True):
        _compare(stored.cluster_rows(found.event_type, rule, found.spans), before, fresh, stale, tally)
        _removed(found.event_type, before, starts, tally)
        stale.extend(before)
    stored.delete_ids(sql, stale)
    stored.insert_rows(sql, fresh)


def rewrite_range(
    sql: Sql, rule: Rule, event_type: str, lo: int | None, hi: int | None, tally: Tally
) -> None:
    """Recompute one range of a type from its failures, streamed, and write it.

    SQLite writes each batch of clusters as the scan goes (memory stays constant). PostgreSQL reads the
    failures as one streamed result (``Sql.stream(exclusive=True)``), which allows no other statement
    until it ends: the range's clusters are gathered first, then written (memory: the clusters of one
    type, a few tens of MB at 10M failures).
    """
    starts: dict[str, int] | None = {} if tally.track else None
    [before] = stored.signatures_of_ranges(sql, [(event_type, lo, hi)], starts)
    batches: Iterable[list[Span]] = scanned(sql, event_type, lo, hi, rule, tally, exclusive=sql.postgres)
    if sql.postgres:
        batches = [[span for batch in batches for span in batch]]
    for batch in batches:
        fresh: list[stored.Row_] = []
        stale: list[str] = []
        _compare(stored.cluster_rows(event_type, rule, batch), before, fresh, stale, tally)
        stored.delete_ids(sql, stale)
        stored.insert_rows(sql, fresh)
    _removed(event_type, before, starts, tally)
    stored.delete_ids(sql, before)


def _removed(
    event_type: str, before: dict[str, stored.Signature], starts: dict[str, int] | None, tally: Tally
) -> None:
    """Count the stored clusters not found again (and note them, as they were, for incidents)."""
    tally.removed += len(before)
    if starts is not None:
        for cid, old in before.items():
            tally.incidents.gone[cid] = Member(cid, event_type, starts[cid], *old)


def _compare(
    rows: Iterable[stored.Row_], before: dict[str, stored.Signature], fresh: list[stored.Row_],
    stale: list[str], tally: Tally,
) -> None:
    """Sort computed rows into new, changed (old id to delete, row to insert) and unchanged; what is left
    in ``before`` afterwards was not found again."""
    for row in rows:
        old = before.pop(row[0], None)
        if old is None:
            tally.added += 1
            fresh.append(row)
            if tally.track:
                tally.incidents.new_starts.append(row[2])
        elif old != stored.signature(row):
            tally.changed += 1
            stale.append(row[0])
            fresh.append(row)
            if tally.track:
                tally.incidents.gone[row[0]] = Member(row[0], row[1], row[2], *old)
        else:
            tally.unchanged += 1


def scanned(
    sql: Sql, event_type: str, lo: int | None, hi: int | None, rule: Rule, tally: Tally, *,
    exclusive: bool = False,
) -> Iterator[list[Span]]:
    """The clusters of a type in ``[lo, hi]``, streamed from the database, in batches (``exclusive``: see
    ``Sql.stream``)."""
    scanner = ClusterScanner(rule)
    pending: list[Span] = []
    for times, events, prints in failures.stream(sql, event_type, lo, hi, exclusive=exclusive):
        tally.failures_read += len(times)
        if tally.progress is not None:
            tally.progress.advance(len(times))
        pending.extend(scanner.feed(times, events, prints))
        if len(pending) >= INSERT_BATCH:
            yield pending
            pending = []
    pending.extend(scanner.finish())
    if pending:
        yield pending
