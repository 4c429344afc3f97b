"""A large ledger on PostgreSQL, written with set-based SQL, for the benchmarks that read one (issue 12).

Usage (from the repository root)::

    python bench/big_ledger.py --db postgresql+psycopg://postgres@127.0.0.1:5432/fa_big --n 10000000
    python bench/big_ledger.py --db URL --n 10000000 --reuse     # keep it if it already holds N events

The database is created if it does not exist (on the same server); a database that holds anything else
is refused unless ``--reuse`` finds it complete. Content (the same as ``health_bench.py``, whose
statements this reuses):

- history: ``N`` events of 8 types, one per second over the ``N`` seconds ending two days before "now"
  (``health_bench.NOW``): 85 % succeeded at the first attempt, 10 % after one failure, 5 % failed once
  and were buried (DEAD); their projection rows, attempts and transitions;
- live: 1,765 recent events written through the Ledger (``health_bench.build_live``): successes and
  failures in the last hour, retries due and overdue, deaths, stuck claims, pending events;
- the ``state_count`` and ``attempt_total`` counters summed from the rows, the id sequences moved past
  the ids used, ``VACUUM ANALYZE``.

How it is fast: ``INSERT ... SELECT generate_series`` in chunks of 500,000 events per transaction, with
the secondary indexes of the big tables dropped during the load and built again afterwards (one sort each
instead of 50 million index insertions), and ``synchronous_commit = off`` for this session only.

Left out: the hash chains of the history rows (``chain_seq``/``chain_hash`` are NULL; computing SHA-256
chains row by row in SQL is not cheap), so ``failure-aware verify`` is **not** expected to be clean on this
database (its chain check fails; projection and counters agree). Nothing else is missing: the counters
match the projection, every event has its transitions and attempts. Readers (health, ``/metrics``, event
lists, the dashboard) see an ordinary ledger.

``--reuse``: when the database already holds at least ``N`` events (the sum of ``state_count``), nothing
is written and the script prints what it found; other benchmarks (``api_bench.py --db URL --reuse``, the
dashboard's) call ``ensure(url, n)`` for the same effect. Mind the size: about 1 KB of disk per event
(10M events: roughly 10 GB); drop the database when done (``DROP DATABASE``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import health_bench
from common import base_parser
from sqlalchemy import Index, create_engine, text
from sqlalchemy.engine import make_url

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.events.recording import failure_fingerprint
from failure_aware.storage import tables

NOW = health_bench.NOW
BIG_TABLES = ("event_detected", "event_state", "attempt", "transition")


def events_in(url: str) -> int:
    """The number of events the database at ``url`` holds (0 when it has no schema yet)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT to_regclass('state_count')")).scalar() is None:
                return 0
            return int(conn.execute(text("SELECT coalesce(sum(n), 0) FROM state_count")).scalar() or 0)
    finally:
        engine.dispose()


def create_database(url: str) -> None:
    """Create the database of ``url`` on its server unless it exists."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                 {"name": parsed.database}).scalar()
            if not found:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def _secondary_indexes() -> list[Index]:
    return [index for name in BIG_TABLES for index in tables.metadata.tables[name].indexes]


def build(url: str, n: int, *, log: Any = print) -> float:
    """Write ``n`` events of history and the live set into the empty database at ``url``; seconds taken."""
    started = time.monotonic()
    Ledger(url, config=Config()).close()  # the schema, by the migrations
    params = {"end": health_bench.HISTORY_END_US, "n": n,
              "fingerprint": failure_fingerprint(health_bench.ERROR_TYPE, health_bench.ERROR)}
    statements = health_bench._history_statements(0)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for index in _secondary_indexes():
                conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
        for lo in range(1, n + 1, health_bench.CHUNK):
            hi = min(n, lo + health_bench.CHUNK - 1)
            series = f"WITH series(i) AS (SELECT generate_series({lo}::bigint, {hi}::bigint)) "
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL synchronous_commit = off"))
                for statement in statements:
                    conn.execute(text(series + statement), params)
            log(f"  {hi:,} of {n:,} events written ({time.monotonic() - started:.0f}s)")
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            for index in _secondary_indexes():
                index.create(conn)
            log(f"  indexes built ({time.monotonic() - started:.0f}s)")
            conn.execute(text("INSERT INTO state_count (event_type, state, n) "
                              "SELECT event_type, state, count(*) FROM event_state "
                              "GROUP BY event_type, state"))
            for table in ("event_detected", "attempt", "transition"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    finally:
        engine.dispose()
    health_bench.build_live(url)  # through the Ledger: its counters and chains are its own
    engine = create_engine(url)
    try:
        with engine.begin() as conn:  # attempt counters: every attempt, the live set's included
            conn.execute(text("DELETE FROM attempt_total"))
            conn.execute(text("INSERT INTO attempt_total (event_type, outcome, n) "
                              "SELECT event_type, outcome, count(*) FROM attempt "
                              "GROUP BY event_type, outcome"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return time.monotonic() - started


def ensure(url: str, n: int, *, reuse: bool = True, log: Any = print) -> float:
    """A database at ``url`` holding the big ledger of ``n`` events: reused when it holds as many (with
    ``reuse``), built when empty; anything else is refused. Returns the seconds spent building (0: reused)."""
    if not url.startswith("postgresql"):
        raise SystemExit("big_ledger writes PostgreSQL only: give --db postgresql+psycopg://...")
    create_database(url)
    found = events_in(url)
    if found and reuse and found >= n:
        log(f"  reusing {make_url(url).database}: {found:,} events")
        return 0.0
    if found:
        raise SystemExit(f"{make_url(url).database} already holds {found:,} events (asked for {n:,}): "
                         "use --reuse to keep it (if large enough), or another database")
    seconds = build(url, n, log=log)
    log(f"  built {n:,} events (+ the live set) in {seconds:.0f}s")
    return seconds


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--db", required=False, help="postgresql+psycopg:// URL of the database to fill")
    parser.add_argument("--n", type=int, default=10_000_000, help="events of history")
    parser.add_argument("--reuse", action="store_true", help="keep the database if it holds >= N events")
    args = parser.parse_args()
    if args.smoke:  # a throwaway database, tiny: checks the statements still match the schema
        from common import Databases

        with Databases(args.pg) as databases:
            url = databases.new("postgresql", "big")
            seconds = build(url, 2000)
            found = events_in(url)
            if found != 2000 + 1765:
                raise SystemExit(f"big_ledger smoke: {found} events, expected {2000 + 1765}")
            print(f"big_ledger smoke: 2,000 events (+ live set) in {seconds:.1f}s")
        return 0
    if not args.db:
        parser.error("--db URL is required (a PostgreSQL database; created if missing)")
    ensure(args.db, args.n, reuse=args.reuse)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
