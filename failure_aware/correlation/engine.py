"""``correlate``: the only writer of ``failure_cluster`` (SPEC 7). Full rebuild or incremental; same result.

Rebuild: for every event type with failures, stream its failure times in order from the partial index
(constant memory), run ``ClusterScanner``, aggregate each kept cluster's fingerprints in SQL over its span,
and write the rows in batches. Either way, stored rows that come out the same are left in place, and rows
of another rule (another id) are replaced: the table ends exactly as if it had been emptied first.

Incremental: the failures recorded since the last run (attempt ids above the remembered watermark,
whatever their times: late imports included) are the *dirty* times. For each dirty time ``d`` of a type,
walk left and right from ``d`` to the nearest clean cuts (``rule.clean_cut``: gaps no qualifying window
crosses, found from the data, so chains of clusters dropped by ``min_events`` are respected too); one
statement reading a page of failures on both sides usually holds both cuts and everything between them
(``range_in_page``), otherwise the walks stream as far as needed. Clusters
between two clean cuts depend only on the failures between them, and the cuts of the new data are clean
in the old data as well (it has a subset of the failures, so windows across the gap only get longer). So
deleting the stored clusters of that range and recomputing it from the failures in it gives exactly what a
rebuild gives. Dirty times inside a range already recomputed are skipped.

Concurrency. SQLite: ``correlate`` runs in one ``BEGIN IMMEDIATE`` transaction, so no attempt can be
written while it reads. PostgreSQL: attempts can commit out of id order, so the watermark is read by
``settled_watermark`` in its own short transaction after ``LOCK TABLE attempt IN SHARE MODE`` (it waits
for every transaction that is inserting attempts, so every id up to the maximum is committed); the
correlation itself then runs in a REPEATABLE READ transaction (``begin``) that serialises concurrent runs on
``correlation_state``. Its snapshot may hold a few attempts above the watermark: they are recomputed again
next time, which is harmless (see docs/correlation.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from sqlalchemy import Connection, text

from ..errors import ValidationError
from . import failures, stored
from .failures import Failure
from .models import CorrelateReport
from .rule import ClusterScanner, Rule, Span, clean_cut
from .sql import Sql

INSERT_BATCH = 1000


@dataclass
class _Tally:
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    failures_read: int = 0
    types: set[str] = field(default_factory=set)


def watermark_first(dialect: str) -> bool:
    """Whether ``settled_watermark`` must run in its own transaction before ``begin`` (PostgreSQL)."""
    return dialect == "postgresql"


def settled_watermark(conn: Connection) -> int:
    """The highest attempt id such that every attempt up to it is committed. Run it in its own short
    transaction before ``begin``: on PostgreSQL it holds a SHARE lock on ``attempt`` until that commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE attempt IN SHARE MODE"))
    return stored.max_attempt_id(conn)


def begin(conn: Connection) -> None:
    """First statements of a correlate transaction: one snapshot (PostgreSQL REPEATABLE READ) taken after
    waiting for any other correlate to finish. On SQLite the write transaction (BEGIN IMMEDIATE) does both."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        # LOCK takes no snapshot: the snapshot comes with the first query, after the other run committed.
        conn.execute(text("LOCK TABLE correlation_state IN EXCLUSIVE MODE"))
        tune(conn)


def tune(conn: Connection) -> None:
    """PostgreSQL: no JIT for this transaction. The fingerprint aggregates look expensive to the planner
    (one index scan per span) and JIT compiling them costs more than running them."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL jit = off"))


def stored_rule(conn: Connection) -> Rule | None:
    """The rule of the stored clusters (None before the first run)."""
    state = stored.load_state(conn)
    return state.rule if state is not None else None


def rebuild(conn: Connection, rule: Rule, now_us: int, *, watermark: int | None = None) -> CorrelateReport:
    """Compute every cluster again with ``rule`` (the result of emptying the table and recomputing)."""
    return correlate(conn, rule, now_us, rebuild=True, watermark=watermark)


def correlate(
    conn: Connection, rule: Rule, now_us: int, *, rebuild: bool = False, watermark: int | None = None
) -> CorrelateReport:
    """Bring ``failure_cluster`` up to date with history; incremental unless ``rebuild`` or the first run.

    ``watermark``: from ``settled_watermark`` (default: the highest attempt id, right on SQLite). A rule
    other than the remembered one without ``rebuild`` raises ``ValidationError`` and writes nothing.
    """
    upto = stored.max_attempt_id(conn) if watermark is None else watermark
    state = stored.load_state(conn)
    tally = _Tally()
    sql = Sql(conn)
    if state is None or rebuild:
        mode = "rebuild"
        _rebuild_all(sql, rule, tally)
    else:
        if state.rule != rule:
            raise ValidationError(
                f"--rebuild required: stored clusters use {state.rule.describe()}; "
                f"asked for {rule.describe()}"
            )
        mode = "incremental"
        upto = max(upto, state.last_attempt_id)
        _incremental(sql, rule, state.last_attempt_id, upto, tally)
    sql.close()
    stored.save_state(conn, rule, upto, now_us)
    return CorrelateReport(
        mode=mode, window_seconds=rule.window_seconds, min_failures=rule.min_failures,
        min_events=rule.min_events, added=tally.added, removed=tally.removed, changed=tally.changed,
        unchanged=tally.unchanged, failures_read=tally.failures_read,
        types_touched=tuple(sorted(tally.types)), clusters_total=stored.count(conn), last_attempt_id=upto,
    )


def _rebuild_all(sql: Sql, rule: Rule, tally: _Tally) -> None:
    for event_type in list(failures.failing_types(sql)):
        tally.types.add(event_type)
        spans = _scanned(sql, event_type, None, None, rule=rule, tally=tally)
        _replace(sql, event_type, None, None, spans, rule=rule, tally=tally)
    for event_type in set(stored.stored_types(sql.conn)) - tally.types:  # clusters of vanished failures
        tally.types.add(event_type)
        _replace(sql, event_type, None, None, iter(()), rule=rule, tally=tally)


def _incremental(sql: Sql, rule: Rule, after_id: int, upto_id: int, tally: _Tally) -> None:
    for event_type, group in groupby(failures.dirty(sql, after_id, upto_id), key=itemgetter(0)):
        tally.types.add(event_type)
        done_upto: int | None = None  # end of the last range recomputed; skip dirty times inside it
        finished = False
        for _, changed_us in group:
            tally.failures_read += 1
            if finished or (done_upto is not None and changed_us <= done_upto):
                continue
            lo, hi, spans = _around(sql, event_type, changed_us, rule, tally)
            _replace(sql, event_type, lo, hi, spans, rule=rule, tally=tally)
            done_upto, finished = hi, hi is None


def _around(
    sql: Sql, event_type: str, changed_us: int, rule: Rule, tally: _Tally
) -> tuple[int | None, int | None, Iterator[list[Span]]]:
    """The range around a changed time bounded by clean cuts, and the clusters in it.

    Usually one statement reads a page of failures on both sides, which holds both cuts and everything
    between them; otherwise the walks stream as far as they must, and the range is read again.
    """
    for page in _pages(rule):
        below, above = failures.neighbourhood(sql, event_type, changed_us, page)
        tally.failures_read += len(below) + len(above)
        found = range_in_page(below, above, changed_us, rule, page)
        if found is not None:
            lo, hi, members = found
            scanner = ClusterScanner(rule)
            spans = scanner.feed([f[0] for f in members], [f[1] for f in members]) + scanner.finish()
            return lo, hi, iter([spans])
    lo = _cut(sql, event_type, changed_us, rule, left=True)
    hi = _cut(sql, event_type, changed_us, rule, left=False)
    return lo, hi, _scanned(sql, event_type, lo, hi, rule=rule, tally=tally)


def _pages(rule: Rule) -> tuple[int, ...]:
    """Page sizes to try around a changed time before streaming (each must be at least N - 1)."""
    first = max(failures.WALK_PAGE, 4 * rule.min_failures)
    return first, 8 * first


def range_in_page(
    below: list[Failure], above: list[Failure], changed_us: int, rule: Rule, page: int
) -> tuple[int | None, int | None, list[Failure]] | None:
    """The clean cuts around ``changed_us`` and the failures between them, if a page decides them.

    ``below``: up to ``page`` failures before ``changed_us``, nearest first; ``above``: up to ``page`` at or
    after it, in time order (``failures.neighbourhood``). None when the page is too short to tell.
    """
    n = rule.min_failures
    lo = clean_cut([t for t, _ in above[: n - 1]][::-1], [t for t, _ in below], rule)
    if lo is None and len(below) == page:  # undecided, and the data goes on
        return None
    equal = sum(1 for t, _ in above if t == changed_us)  # `above` starts with the changed time itself
    up_to_changed = [t for t, _ in reversed(below)] + [t for t, _ in above[:equal]]
    hi = clean_cut(up_to_changed[-(n - 1) :], [t for t, _ in above[equal:]], rule)
    if hi is None and len(above) == page:
        return None
    members = [f for f in itertools.chain(reversed(below), above)
               if (lo is None or f[0] >= lo) and (hi is None or f[0] <= hi)]
    return lo, hi, members


def _cut(sql: Sql, event_type: str, start_us: int, rule: Rule, *, left: bool) -> int | None:
    behind, ahead = failures.walk(sql, event_type, start_us, left=left, n=rule.min_failures)
    try:
        return clean_cut(behind, ahead, rule)
    finally:
        ahead.close()


def _replace(
    sql: Sql, event_type: str, lo: int | None, hi: int | None, spans: Iterator[list[Span]], *, rule: Rule,
    tally: _Tally,
) -> None:
    """Make the stored clusters of a type in ``[lo, hi]`` (bounded by clean cuts, or unbounded) those in
    ``spans``: rows that did not change are left alone."""
    before = stored.signatures(sql, event_type, lo, hi)
    for batch in spans:
        tops = failures.top_fingerprints(sql, event_type, [(s.start_us, s.end_us) for s in batch])
        fresh, stale = [], []
        for row in stored.cluster_rows(event_type, rule, batch, tops):
            old = before.pop(row[0], None)
            if old is None:
                tally.added += 1
                fresh.append(row)
            elif old != stored.signature(row):
                tally.changed += 1
                stale.append(row[0])
                fresh.append(row)
            else:
                tally.unchanged += 1
        stored.delete_ids(sql, stale)
        stored.insert_rows(sql, fresh)
    tally.removed += len(before)
    stored.delete_ids(sql, before)


def _scanned(
    sql: Sql, event_type: str, lo: int | None, hi: int | None, *, rule: Rule, tally: _Tally
) -> Iterator[list[Span]]:
    """The clusters of a type in ``[lo, hi]``, streamed from the database, in batches."""
    scanner = ClusterScanner(rule)
    pending: list[Span] = []
    for times, events in failures.stream(sql, event_type, lo, hi):
        tally.failures_read += len(times)
        pending.extend(scanner.feed(times, events))
        if len(pending) >= INSERT_BATCH:
            yield pending
            pending = []
    pending.extend(scanner.finish())
    if pending:
        yield pending
