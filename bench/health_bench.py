"""Health on large histories (issue 3): ``Ledger.health()`` must not slow down as the history grows.

Usage (from the repository root)::

    python bench/health_bench.py [--n 1000000,10000000] [--backends sqlite,postgresql] [-k 7]
                                 [--backlog PERMILLE] [--explain] [--db URL] [--pg ADMIN_URL]
                                 [--smoke] [--json OUT]

For each size ``N`` a database is built (untimed) with ``N`` events of history plus one fixed "live" set:

- history: ``N`` events spread over the ``N`` seconds that end two days before "now", written with raw
  ``INSERT ... SELECT`` over a number series (bypassing the Ledger for speed, consistent with the schema:
  events, projection, attempts, transitions and the ``state_count`` counters): 90 % succeeded at the first
  attempt, 10 % after one failure, 5 % failed once and were buried (DEAD). ``--backlog P`` leaves P per
  mille of them FAILED and long overdue instead (a growing backlog, to show what that costs).
- live: the same 1,765 events for every ``N``, written through the Ledger API (``import_events`` and
  ``claim``): 1,500 successes and 150 failures in the last hour (so retries due, most overdue), 10 deaths
  within 24 h, 5 stuck claims, 100 pending events.

Then ``Ledger(url, readonly=True).health()`` runs ``k`` times (after one warm-up call) and the median is
reported, for all types and with ``--type``, with the ratio of each size's median to the smallest size's.
Target: health at 10M events within 2x its time at 1M. ``--explain`` prints the query plan of every
statement health runs (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL, after ANALYZE) and flags any
full scan of a history-sized table.

``--db URL`` uses that (empty) database for a single size instead of a throwaway one (SQLite by default;
``--backends postgresql`` creates throwaway PostgreSQL databases on ``--pg``).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Databases,
    Series,
    backends,
    base_parser,
    markdown_table,
    sqlite_file,
    timed,
    write_json,
)
from sqlalchemy import event, text

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.domain.timeutil import format_time, to_us
from failure_aware.events.recording import failure_fingerprint

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HISTORY_END_US = to_us(NOW - timedelta(days=2))
TYPES = 8
ONE_TYPE = "bench.type_3"  # what --type measures
CHUNK = 500_000
ERROR_TYPE = "TimeoutError"
ERROR = "upstream timed out after 30s"
BIG_TABLES = ("event_detected", "event_state", "attempt", "transition", "annotation")
_SQLITE_FULL_SCAN = re.compile(r"^SCAN (" + "|".join(BIG_TABLES) + r")\b")
_PG_FULL_SCAN = re.compile(r"Seq Scan on (" + "|".join(BIG_TABLES) + r")\b")


class HandClock:
    """A clock the builder moves by hand."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment

    def __call__(self) -> datetime:
        return self.now


# -- building the history (raw SQL) --------------------------------------------------------------------------
def _history_statements(backlog_permille: int) -> list[str]:
    """INSERT ... SELECT statements over ``series(i)`` for events ``:lo..:hi`` (one kind of event each)."""
    d = "(:end - (:n - i) * 1000000)"  # detected_at_us: one event per second, ending at :end
    a1, a2, buried, retry = f"({d} + 1000000)", f"({d} + 11000000)", f"({d} + 31000000)", f"({d} + 11000000)"
    kind = f"'bench.type_' || (i % {TYPES})"
    backlog = f"(i % 1000) < {backlog_permille}"
    where = {
        "S": f"NOT ({backlog}) AND i % 20 NOT IN (0, 1, 2)",  # succeeded at the first attempt
        "R": f"NOT ({backlog}) AND i % 20 IN (1, 2)",  # failed once, then succeeded
        "D": f"NOT ({backlog}) AND i % 20 = 0",  # failed once, then buried by an operator
        "B": backlog,  # failed once, retry long overdue (the backlog)
    }
    err = f"'{ERROR_TYPE}', '{ERROR}'"
    fp = ":fingerprint"
    es_cols = ("event_id, event_type, state, detected_at_us, attempt_count, budget_failures, "
               "next_retry_at_us, due_at_us, claim_forced, last_error_type, last_error, last_attempt_at_us, "
               "updated_at_us")
    at_cols = "event_id, event_type, number, at_us, outcome, error_type, error, fingerprint, forced, actor"
    tr_cols = "event_id, at_us, from_state, to_state, actor, reason, attempt_number"
    statements = [
        "INSERT INTO event_detected (id, event_type, key, payload, detected_at_us, recorded_at_us) "
        f"SELECT i, {kind}, 'h' || i, '{{}}', {d}, {d} FROM series",
        f"INSERT INTO transition ({tr_cols}) SELECT i, {d}, NULL, 'PENDING', 'system', 'detected', NULL "
        "FROM series",
    ]
    rows = {
        "S": (f"'SUCCEEDED', {d}, 1, 0, NULL, NULL, false, NULL, NULL, {a1}, {a1}",
              [(1, a1, "'succeeded', NULL, NULL, NULL")],
              [(a1, "'PENDING'", "'SUCCEEDED'", "'system'", "'attempt 1 succeeded'", "1")]),
        "R": (f"'SUCCEEDED', {d}, 2, 1, NULL, NULL, false, NULL, NULL, {a2}, {a2}",
              [(1, a1, f"'failed', {err}, {fp}"), (2, a2, "'succeeded', NULL, NULL, NULL")],
              [(a1, "'PENDING'", "'FAILED'", "'system'", "'attempt 1 failed'", "1"),
               (a2, "'FAILED'", "'SUCCEEDED'", "'system'", "'attempt 2 succeeded'", "2")]),
        "D": (f"'DEAD', {d}, 1, 1, NULL, NULL, false, {err}, {a1}, {buried}",
              [(1, a1, f"'failed', {err}, {fp}")],
              [(a1, "'PENDING'", "'FAILED'", "'system'", "'attempt 1 failed'", "1"),
               (buried, "'FAILED'", "'DEAD'", "'ops'", "'buried: given up by operator'", "NULL")]),
        "B": (f"'FAILED', {d}, 1, 1, {retry}, {retry}, false, {err}, {a1}, {a1}",
              [(1, a1, f"'failed', {err}, {fp}")],
              [(a1, "'PENDING'", "'FAILED'", "'system'", "'attempt 1 failed'", "1")]),
    }
    for name, (state_values, attempts, transitions) in rows.items():
        if name == "B" and backlog_permille <= 0:
            continue
        cond = where[name]
        statements.append(f"INSERT INTO event_state ({es_cols}) SELECT i, {kind}, {state_values} "
                          f"FROM series WHERE {cond}")
        for number, at, outcome in attempts:
            statements.append(f"INSERT INTO attempt ({at_cols}) SELECT i, {kind}, {number}, {at}, {outcome}, "
                              f"false, 'system' FROM series WHERE {cond}")
        for at, old, new, actor, reason, number_sql in transitions:
            statements.append(f"INSERT INTO transition ({tr_cols}) SELECT i, {at}, {old}, {new}, {actor}, "
                              f"{reason}, {number_sql} FROM series WHERE {cond}")
    return statements


def build_history(url: str, n: int, backlog_permille: int) -> None:
    """Create the schema through the Ledger, then bulk-insert ``n`` events of history and the counters."""
    Ledger(url, config=Config()).close()
    params = {"end": HISTORY_END_US, "n": n, "fingerprint": failure_fingerprint(ERROR_TYPE, ERROR)}
    statements = _history_statements(backlog_permille)
    counters = ("INSERT INTO state_count (event_type, state, n) "
                "SELECT event_type, state, count(*) FROM event_state GROUP BY event_type, state")
    if url.startswith("sqlite"):
        _build_sqlite(sqlite_file(url), n, statements, counters, params)
    else:
        _build_postgres(url, n, statements, counters, params)


def _build_sqlite(path: str, n: int, statements: list[str], counters: str, params: dict[str, Any]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    # A rollback journal without fsync for the bulk load (a WAL would grow to the size of the data).
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -1000000")
    for lo in range(1, n + 1, CHUNK):
        hi = min(n, lo + CHUNK - 1)
        series = (f"WITH RECURSIVE series(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM series "
                  f"WHERE i < {hi}) ")
        db.execute("BEGIN")
        for statement in statements:
            db.execute(series + statement, params)
        db.execute("COMMIT")
    db.execute(counters)
    db.execute("PRAGMA journal_mode = WAL")
    db.close()


def _build_postgres(url: str, n: int, statements: list[str], counters: str, params: dict[str, Any]) -> None:
    with Ledger(url, config=Config()) as ledger:
        engine = ledger.store.engine
        for lo in range(1, n + 1, CHUNK):
            hi = min(n, lo + CHUNK - 1)
            series = f"WITH series(i) AS (SELECT generate_series({lo}::bigint, {hi}::bigint)) "
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(text(series + statement), params)
        with engine.begin() as conn:
            conn.execute(text(counters))
            for table in ("event_detected", "attempt", "transition"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


# -- the live set (through the Ledger API) ----------------------------------------------------------------
def build_live(url: str) -> None:
    """The same recent activity for every size: successes, failures, deaths, stuck claims, pending.

    Imported in one transaction (SPEC 8 records; the states follow the default policy), plus five claims
    taken 10 minutes ago with a 60 s lease and never finished (stuck).
    """
    def record(j: int, detected: datetime, failures: int = 0, succeeded: bool = False) -> dict[str, Any]:
        attempts = [{"at": format_time(detected + timedelta(seconds=1 + 20 * f)), "outcome": "failed",
                     "error_type": ERROR_TYPE, "error": ERROR} for f in range(failures)]
        if succeeded:
            attempts.append({"at": format_time(detected + timedelta(seconds=1 + 20 * failures)),
                             "outcome": "succeeded"})
        return {"event_type": f"bench.type_{j % TYPES}", "key": f"live-{detected.timestamp()}-{j}",
                "detected_at": format_time(detected), "attempts": attempts}

    records = [record(j, NOW - timedelta(minutes=55) + timedelta(seconds=2 * j), succeeded=True)
               for j in range(1500)]  # 1,500 successes in the last hour
    records += [record(j, NOW - timedelta(minutes=50) + timedelta(seconds=18 * j), failures=1)
                for j in range(150)]  # failed once: retries due, most of them overdue (> 15 min)
    records += [record(j, NOW - timedelta(hours=10) + timedelta(minutes=j), failures=6)
                for j in range(10)]  # died (6th failure) 10 hours ago
    records += [record(j, NOW - timedelta(minutes=5) + timedelta(seconds=j)) for j in range(105)]  # pending
    clock = HandClock(NOW)  # the import at "now" (no time of it may lie in the future, SPEC 3) ...
    with Ledger(url, config=Config(), clock=clock) as ledger:
        ledger.import_events(records)
        clock.now = NOW - timedelta(minutes=10)  # ... the claims 10 minutes ago, so they are stuck now
        for j, pending in enumerate(ledger.events(state="PENDING", limit=5)):
            ledger.claim(pending.id, worker=f"bench-worker-{j}", lease_seconds=60)


# -- measuring ------------------------------------------------------------------------------------------
@dataclass
class Measured:
    """One database of the run: how it was built, and the timings of health on it."""

    backend: str
    events: int
    url: str
    built_s: float
    size_bytes: int
    ledger: Ledger
    verdict: str = ""
    overall: Series = field(default_factory=lambda: Series("health()", 1))
    one_type: Series = field(default_factory=lambda: Series("health(event_type)", 1))


def measure(databases: list[Measured], k: int) -> None:
    """``k`` rounds over every database, interleaved (a noisy neighbour slows every size alike)."""
    for measured in databases:
        measured.verdict = str(measured.ledger.health().verdict)  # warm-up, and a sanity check of the data
    for _ in range(k):
        for measured in databases:
            ledger = measured.ledger
            measured.overall.times.append(timed(ledger.health))
            measured.one_type.times.append(timed(lambda ledger=ledger: ledger.health(event_type=ONE_TYPE)))


def explain(url: str) -> list[str]:
    """The plan of every statement one ``health()`` runs; lines flagged ``FULL SCAN`` read a whole table."""
    captured: list[tuple[str, Any]] = []
    out: list[str] = []
    with Ledger(url, readonly=True, config=Config(), clock=lambda: NOW) as ledger:
        engine = ledger.store.engine

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                captured.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)
        ledger.health()
        event.remove(engine, "before_cursor_execute", record)
        sqlite = engine.dialect.name == "sqlite"
        with engine.connect() as conn:
            for statement, parameters in captured:
                prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
                rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
                lines = [str(r[-1]) if sqlite else str(r[0]) for r in rows]
                pattern = _SQLITE_FULL_SCAN if sqlite else _PG_FULL_SCAN
                full = [ln for ln in lines if pattern.search(ln.strip())]
                out.append(("FULL SCAN " if full else "ok        ") + " ".join(statement.split())[:150])
                out.extend(f"    {ln}" for ln in lines)
    return out


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.set_defaults(backends="sqlite")
    parser.add_argument("--n", default="1000000", help="comma-separated history sizes (default 1000000)")
    parser.add_argument("--backlog", type=int, default=0, metavar="PERMILLE",
                        help="leave this many per mille of the history FAILED and overdue (default 0)")
    parser.add_argument("--explain", action="store_true", help="print the query plan of each statement")
    parser.add_argument("--db", default=None,
                        help="use this empty database (one size) instead of a throwaway one")
    args = parser.parse_args()
    sizes = [20_000, 200_000] if args.smoke else [int(x) for x in args.n.split(",") if x.strip()]
    k = 1 if args.smoke else (args.repeat or 7)
    chosen = ["sqlite" if args.db.startswith("sqlite") else "postgresql"] if args.db else backends(args)
    if args.db and len(sizes) != 1:
        raise SystemExit("--db takes one size (--n N)")
    built: list[Measured] = []
    with Databases(args.pg) as databases:
        try:
            for backend in chosen:
                for n in sizes:
                    url = args.db or databases.new(backend, f"health{n}")
                    started = time.perf_counter()
                    build_history(url, n, args.backlog)
                    build_live(url)
                    if backend == "postgresql":
                        _analyze(url)  # fresh statistics, as autovacuum would have them on a live database
                    took = time.perf_counter() - started
                    ledger = Ledger(url, readonly=True, config=Config(), clock=lambda: NOW)
                    built.append(Measured(backend, n, url, took, _size(url), ledger))
                    print(f"{backend} N={n:,}: built in {took:.0f} s", file=sys.stderr, flush=True)
            measure(built, k)
            if args.explain:
                for measured in built:
                    print(f"\n### plans, {measured.backend}, N={measured.events:,}\n\n```")
                    print("\n".join(explain(measured.url)))
                    print("```\n")
        finally:
            for measured in built:
                measured.ledger.close()
    rows: list[list[object]] = []
    for m in built:
        base = next(first for first in built if first.backend == m.backend).overall.median
        rows.append([m.backend, m.events, f"{m.built_s:.0f}", f"{m.size_bytes / 2**30:.2f}",
                     _ms(m.overall.median), _spread(m.overall), _ms(m.one_type.median),
                     f"{m.overall.median / base:.2f}", m.verdict])
    print(markdown_table(
        ["backend", "events", "build s", "GiB", "health ms (median)", "min-max ms", "--type ms", "x smallest",
         "verdict"], rows,
    ))
    write_json(args.json, {"benchmark": "health", "k": k, "backlog_permille": args.backlog, "results": [
        {"backend": m.backend, "events": m.events, "build_s": m.built_s, "bytes": m.size_bytes,
         "health": m.overall.as_dict(), "health_type": m.one_type.as_dict(), "verdict": m.verdict}
        for m in built
    ]})
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _spread(series: Series) -> str:
    return f"{_ms(min(series.times))}-{_ms(max(series.times))}"


def _analyze(url: str) -> None:
    with Ledger(url, config=Config()) as ledger, ledger.store.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as conn:
        conn.execute(text("VACUUM ANALYZE"))


def _size(url: str) -> int:
    if url.startswith("sqlite"):
        return sum(Path(sqlite_file(url) + s).stat().st_size for s in ("", "-wal") if
                   Path(sqlite_file(url) + s).exists())
    with Ledger(url, readonly=True, config=Config()) as ledger, ledger.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)


if __name__ == "__main__":
    sys.exit(main())
