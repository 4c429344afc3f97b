"""``correlate``: the only writer of ``failure_cluster`` (SPEC 7). Full rebuild or incremental; same result.

Rebuild: for every event type with failures, stream its failures (time, event, fingerprint) in order from
the partial index, which holds all three (an index-only scan, constant memory), run ``ClusterScanner``,
which also counts each cluster's fingerprints, and write the rows in batches. Either way, stored rows
that come out the same are left in place, and rows of another rule (another id) are replaced: the table
ends exactly as if it had been emptied first.

Incremental (``incremental``): the failures recorded since the last run (attempt ids above the remembered
watermark, whatever their times: late imports included) are the *dirty* times. For each dirty time ``d``
of a type, walk left and right from ``d`` to the nearest clean cuts (``rule.clean_cut``: gaps no
qualifying window crosses, found from the data, so chains of clusters dropped by ``min_events`` are
respected too). Clusters between two clean cuts depend only on the failures between them, and the cuts of
the new data are clean in the old data as well (it has a subset of the failures, so windows across the gap
only get longer). So deleting the stored clusters of that range and recomputing it from the failures in it
gives exactly what a rebuild gives. Dirty times inside a range already recomputed are skipped.

Concurrency. SQLite: ``correlate`` runs in one ``BEGIN IMMEDIATE`` transaction, so no attempt can be
written while it reads. PostgreSQL: attempts can commit out of id order, so the watermark is read by
``settled_watermark`` in its own short transaction after ``LOCK TABLE attempt IN SHARE MODE`` (it waits
for every transaction that is inserting attempts, so every id up to the maximum is committed); the
correlation itself then runs in a REPEATABLE READ transaction (``begin``) that serialises concurrent runs on
``correlation_state``. Its snapshot may hold a few attempts above the watermark: they are recomputed again
next time, which is harmless (see docs/correlation.md).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from failure_aware.correlation import failures, incidents, incremental, stored
from failure_aware.correlation.rule import Rule, resolve_rule
from failure_aware.correlation.sql import Sql
from failure_aware.correlation.writes import Tally, rewrite_range
from failure_aware.domain.cluster_records import CorrelateReport
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.progress import Progress
from failure_aware.storage.store import Store


def run(
    store: Store, *, rebuild: bool, window: str | int | float | None, min_failures: int | None,
    min_events: int | None, on_progress: Progress | None = None,
) -> CorrelateReport:
    """``Ledger.correlate``: the transactions a run needs on ``store``'s backend, then ``correlate``.

    PostgreSQL reads the settled watermark in a short transaction of its own first (see the module
    docstring); SQLite reads it inside the correlation's transaction, which holds the write lock.
    """
    watermark = None
    if watermark_first(store.dialect):
        with store.write() as conn:
            watermark = settled_watermark(conn)
    with store.write() as conn:
        begin(conn)
        rule = resolve_rule(stored_rule(conn), window, min_failures, min_events)
        return correlate(conn, rule, store.now_us(), rebuild=rebuild, watermark=watermark,
                         on_progress=on_progress)


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


class FailureProgress:
    """Progress over failures read (``on_progress(phase, done, total)``), the total from the attempt
    counters (failed and abandoned attempts; no scan of history); a no-op without a callback."""

    def __init__(
        self, conn: Connection, on_progress: Progress | None, phase: str
    ) -> None:
        from failure_aware.events import totals

        self.on_progress, self.phase, self.done = on_progress, phase, 0
        self.total = 0 if on_progress is None else sum(
            n for (_type, outcome), n in totals.stored(conn).items() if outcome in ("failed", "abandoned"))

    def advance(self, failures: int) -> None:
        self.done += failures
        if self.on_progress is not None:
            self.on_progress(self.phase, self.done, max(self.total, self.done))


def correlate(
    conn: Connection, rule: Rule, now_us: int, *, rebuild: bool = False, watermark: int | None = None,
    on_progress: Progress | None = None,
) -> CorrelateReport:
    """Bring ``failure_cluster`` up to date with history; incremental unless ``rebuild`` or the first run.

    ``watermark``: from ``settled_watermark`` (default: the highest attempt id, right on SQLite). A rule
    other than the remembered one without ``rebuild`` raises ``ValidationError`` and writes nothing.
    """
    upto = stored.max_attempt_id(conn) if watermark is None else watermark
    state = stored.load_state(conn)
    tally = Tally()
    sql = Sql(conn)
    if state is None or rebuild:
        mode = "rebuild"
        tally.progress = FailureProgress(conn, on_progress, "correlate")
        _rebuild_all(sql, rule, tally)
        total = tally.added + tally.changed + tally.unchanged  # every row a rebuild leaves is one of these
        incidents.rebuild(sql, rule, tally.incidents)
    else:
        if state.rule != rule:
            raise ValidationError(
                f"--rebuild required: stored clusters use {state.rule.describe()}; "
                f"asked for {rule.describe()}"
            )
        mode = "incremental"
        upto = max(upto, state.last_attempt_id)
        tally.track = True
        tally.incidents.after_id = state.last_attempt_id
        incremental.run(sql, rule, state.last_attempt_id, upto, tally)
        total = state.cluster_count + tally.added - tally.removed
        incidents.update(sql, rule, tally.incidents)
    sql.close()
    found = tally.incidents
    stored.save_state(conn, stored.CorrelationState(rule, upto, total), now_us)
    return CorrelateReport(
        mode=mode, window_seconds=rule.window_seconds, min_failures=rule.min_failures,
        min_events=rule.min_events, added=tally.added, removed=tally.removed, changed=tally.changed,
        unchanged=tally.unchanged, failures_read=tally.failures_read,
        types_touched=tuple(sorted(tally.types)), clusters_total=total, last_attempt_id=upto,
        incidents_added=found.added, incidents_removed=found.removed, incidents_changed=found.changed,
        incidents_unchanged=found.unchanged,
    )


def _rebuild_all(sql: Sql, rule: Rule, tally: Tally) -> None:
    for event_type in list(failures.failing_types(sql)):
        tally.types.add(event_type)
        rewrite_range(sql, rule, event_type, None, None, tally)
    for event_type in set(stored.stored_types(sql.conn)) - tally.types:  # clusters of vanished failures
        tally.types.add(event_type)
        rewrite_range(sql, rule, event_type, None, None, tally)  # finds none: deletes them
