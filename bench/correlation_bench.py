"""Correlation benchmark (SPEC 7): full rebuild and incremental ``correlate`` against three baselines.

Usage (from the repository root)::

    python bench/correlation_bench.py [--n 1000000] [--db URL] [--runs 3] [--seed 7] [--reuse]

Without ``--db`` a SQLite file in a temporary directory is used; with a ``postgresql://`` URL the benchmark
works in its own schema ``failure_aware_bench`` (dropped and re-created; nothing else is touched).

Setup (not timed): ``--n`` failures of 50 event types over one year are written straight into the real
tables with the drivers' fastest bulk paths (``executemany`` / ``COPY``), bypassing the Ledger. Rows are
valid (constraints, fingerprints, attempt numbers, states), but no ``transition`` rows are written, so do
not run ``verify`` on this database. The shape: 60 % background failures (events failing 1-3 times with
10 s / 30 s / 90 s backoff, spread uniformly: single events retrying, never a cluster on their own) and
40 % incidents (a type fails for 1 minute to 4 hours; 5-600 events, each retrying up to 6 times), type
frequencies Zipf-like, messages from a few templates per type. Fixed seed.

Each measurement runs in its own subprocess, so its peak RSS is its own; only the operation is timed
(opening the database is not, and a full garbage collection runs before the clock starts, so the one a
fresh process owes its imports does not land in the operation), wall and CPU time of the process; the
median of ``--runs`` runs is reported. On SQLite the database works inside the process, so CPU time is
the fair measure on a busy machine; on PostgreSQL the server's work is not in it, so compare wall times
there:

- ``rebuild``: ``Ledger.correlate(rebuild=True)`` (clusters, top fingerprints, rows written);
- ``incremental``: ``Ledger.correlate()`` after 1,000 new failures (in the hour after the latest one, over
  all types) were written, untimed, before each run; ``incremental_late``: the same with 10 % of the new
  failures late (times anywhere in the year, as an import brings them), each its own neighbourhood;
  ``incremental_scattered``: all 1,000 new failures late, scattered over the whole history (SPEC 13's
  issue: "late failures cost what they touch"; measured with ``--types 1000 --days 30``);
- ``naive_sql``: the rule as one SQL query with window functions (``LEAD`` for the window, ``LAG`` and a
  running ``SUM`` for the chaining, a range join to count failures and distinct events), fetched;
- ``pandas``: the rule vectorised with pandas/NumPy over a ``read_sql`` of every failure;
- ``scan``: the bare scan ``SELECT event_type, at_us FROM attempt WHERE <failure> ORDER BY event_type,
  at_us`` fetched and discarded through a raw DB-API cursor.

The two baselines compute clusters only (no fingerprints, nothing written); their cluster counts are
printed next to the rebuild's as a check that all three implement the same rule.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import sqlalchemy as sa  # noqa: E402

from failure_aware.config import Config  # noqa: E402
from failure_aware.domain.fingerprint import fingerprint  # noqa: E402
from failure_aware.ledger import Ledger  # noqa: E402
from failure_aware.storage.store import Store  # noqa: E402
from failure_aware.storage.tables import FAILURE_SQL  # noqa: E402  (the condition the product and its index use)

SCHEMA = "failure_aware_bench"
TYPES = 50
YEAR_US = 365 * 86_400 * 1_000_000
S = 1_000_000
W_US, N, E = 600 * S, 3, 2  # the default rule, used by every implementation
TEMPLATES = (
    ("TimeoutError", "upstream timed out after {a}ms"),
    ("ConnectionError", "connection refused by 10.0.{b}.{c}:5432"),
    ("HTTPError", "HTTP 503 from partner api (request {h})"),
    ("DeadlockError", "deadlock detected on relation {a}"),
)
MEASURES = ("rebuild", "incremental", "incremental_late", "incremental_scattered", "naive_sql", "pandas",
            "scan")
LATE_SHARE = {"incremental": 0.0, "incremental_late": 0.1, "incremental_scattered": 1.0}


# -- data ------------------------------------------------------------------------------------------------
def generate(n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """``(at_us, type index, event key, template index)`` for ``n`` failures, sorted by time.

    Event keys are unique integers; an event's failures are in time order (its retries follow).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, TYPES + 1) ** 0.8
    weights /= weights.sum()
    backoff = np.array([0, 10, 40, 130, 400, 1210]) * S  # cumulative 10 s * 3 ** k
    rows: list[tuple[int, int, int, int]] = []
    key = 0
    # Background: events failing 1-3 times, anywhere in the year.
    target = int(n * 0.6)
    while len(rows) < target:
        count = min(50_000, target - len(rows))
        starts = rng.integers(0, YEAR_US, count)
        types = rng.choice(TYPES, count, p=weights)
        tries = rng.choice([1, 2, 3], count, p=[0.5, 0.3, 0.2])
        templates = rng.integers(0, len(TEMPLATES), count)
        for start, kind, k, template in zip(starts, types, tries, templates, strict=True):
            for r in range(int(k)):
                rows.append((int(start + backoff[r] + rng.integers(0, S)), int(kind), key, int(template)))
            key += 1
    # Incidents: one type fails for a while, many events each retrying.
    while len(rows) < n:
        kind = int(rng.choice(TYPES, p=weights))
        start = int(rng.integers(0, YEAR_US))
        duration = int(min(max(rng.exponential(20 * 60), 60), 4 * 3600) * S)
        template = int(rng.integers(0, len(TEMPLATES)))
        for _ in range(int(rng.integers(5, 600))):
            first = start + int(rng.integers(0, duration))
            for r in range(int(rng.integers(1, 7))):
                rows.append((first + int(backoff[r]), kind, key, template))
            key += 1
    rows = rows[:n]  # may cut an event short: its first failures stay, still in order
    rows.sort()
    return rows


def message(template: int, at_us: int) -> tuple[str, str]:
    error_type, text = TEMPLATES[template]
    return error_type, text.format(a=at_us % 9973, b=at_us % 251, c=at_us % 239, h=format(at_us % 65521, "x"))


def write_failures(url: str, rows: list[tuple[int, int, int, int]], first_attempt_id: int) -> None:
    """Insert events, their projection and failed attempts for ``rows`` (fresh event keys only)."""
    fingerprints = {t: fingerprint(message(t, 123456789)[1]) for t in range(len(TEMPLATES))}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        top = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM event_detected")).scalar_one()
        next_event = int(top) + 1
        events: dict[int, list[Any]] = {}  # key -> [id, type, first at, count, last at, last template]
        attempts = []
        for attempt_id, (at_us, kind, key, template) in enumerate(rows, start=first_attempt_id):
            event = events.get(key)
            if event is None:
                event = events[key] = [next_event, kind, at_us, 0, at_us, template]
                next_event += 1
            event[3] += 1
            event[4], event[5] = at_us, template
            error_type, text = message(template, at_us)
            attempts.append((attempt_id, event[0], f"type{kind:02d}.webhook", event[3], at_us, "failed",
                             error_type, text, fingerprints[template], False, "bench"))
        event_rows = [(e[0], f"type{e[1]:02d}.webhook", f"bench-{k}", "{}", e[2] - S, e[2] - S)
                      for k, e in events.items()]
        state_rows = [
            (e[0], f"type{e[1]:02d}.webhook", "DEAD" if e[3] >= 6 else "FAILED", e[2] - S, e[3], e[3],
             None if e[3] >= 6 else e[4] + 3600 * S, None if e[3] >= 6 else e[4] + 3600 * S, False,
             *message(e[5], e[4]), e[4], e[4])
            for e in events.values()
        ]
        copy_rows(conn, "event_detected", "id, event_type, key, payload, detected_at_us, recorded_at_us",
                  event_rows)
        copy_rows(conn, "event_state", "event_id, event_type, state, detected_at_us, attempt_count, "
                  "budget_failures, next_retry_at_us, due_at_us, claim_forced, last_error_type, last_error, "
                  "last_attempt_at_us, updated_at_us", state_rows)
        copy_rows(conn, "attempt", "id, event_id, event_type, number, at_us, outcome, error_type, error, "
                  "fingerprint, forced, actor", attempts)
        if conn.dialect.name == "postgresql":
            for table in ("event_detected", "attempt"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
    engine.dispose()


def copy_rows(conn: sa.Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(columns.split(",")))
        raw.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # type: ignore[union-attr]


def setup(url: str, n: int, seed: int) -> None:
    started = time.perf_counter()
    Store(url).dispose()  # creates the schema
    rows = generate(n, seed)
    write_failures(url, rows, 1)
    analyze(url)
    print(f"setup: {n:,} failures written in {time.perf_counter() - started:.1f} s", flush=True)


def analyze(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()


def add_new_failures(url: str, count: int, seed: int, late_share: float) -> None:
    """``count`` new failures in the hour after the latest one, except ``late_share`` of them, which are
    late (times anywhere before it, as an import brings)."""
    import numpy as np

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        last_at = int(conn.execute(sa.text("SELECT max(at_us) FROM attempt")).scalar_one())
        last_id = int(conn.execute(sa.text("SELECT max(id) FROM attempt")).scalar_one())
        last_key = int(conn.execute(sa.text("SELECT count(*) FROM event_detected")).scalar_one())
    engine.dispose()
    rng = np.random.default_rng(seed)
    late = int(count * late_share)
    recent = last_at + rng.integers(1, 3600 * S, count - late)
    times = np.concatenate([recent, rng.integers(0, last_at, late)])
    rows = sorted(
        (int(t), int(rng.integers(0, TYPES)), last_key + 10_000_000 + i, int(rng.integers(0, len(TEMPLATES))))
        for i, t in enumerate(times)
    )
    write_failures(url, rows, last_id + 1)


# -- measurements (each runs in a subprocess) ------------------------------------------------------------
# Each runner prepares (opens the database: not timed) and returns the operation to time.
Operation = Callable[[], dict[str, Any]]


def run_rebuild(url: str) -> Operation:
    ledger = Ledger(url, config=Config())

    def rebuild() -> dict[str, Any]:
        report = ledger.correlate(rebuild=True, window=W_US // S, min_failures=N, min_events=E)
        return {"clusters": report.clusters_total, "failures_read": report.failures_read}

    return rebuild


def run_incremental(url: str) -> Operation:
    ledger = Ledger(url, config=Config())

    def incremental() -> dict[str, Any]:
        report = ledger.correlate()
        assert report.mode == "incremental", report
        return {"clusters": report.clusters_total, "failures_read": report.failures_read,
                "changed": report.added + report.removed + report.changed}

    return incremental


NAIVE_SQL = f"""
WITH f AS (
    SELECT event_type, at_us, ROW_NUMBER() OVER w AS i, LEAD(at_us, {N - 1}) OVER w AS last_at
    FROM attempt WHERE {FAILURE_SQL}
    WINDOW w AS (PARTITION BY event_type ORDER BY at_us)
), q AS (
    SELECT event_type, i, at_us AS first_at, last_at,
           LAG(last_at) OVER (PARTITION BY event_type ORDER BY i) AS previous_last
    FROM f WHERE last_at - at_us <= {W_US}
), g AS (
    SELECT event_type, first_at, last_at,
           SUM(CASE WHEN previous_last IS NULL OR first_at > previous_last THEN 1 ELSE 0 END)
               OVER (PARTITION BY event_type ORDER BY i ROWS UNBOUNDED PRECEDING) AS k
    FROM q
), c AS (
    SELECT event_type, MIN(first_at) AS window_start, MAX(last_at) AS window_end FROM g GROUP BY event_type, k
)
SELECT c.event_type, c.window_start, c.window_end, COUNT(*) AS failures, COUNT(DISTINCT a.event_id) AS events
FROM c JOIN attempt a ON a.event_type = c.event_type AND a.at_us >= c.window_start
    AND a.at_us <= c.window_end AND a.{FAILURE_SQL}
GROUP BY c.event_type, c.window_start, c.window_end
HAVING COUNT(DISTINCT a.event_id) >= {E}
"""


def run_naive_sql(url: str) -> Operation:
    engine = sa.create_engine(url)

    def naive_sql() -> dict[str, Any]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(NAIVE_SQL).fetchall()
        return {"clusters": len(rows)}

    return naive_sql


def run_pandas(url: str) -> Operation:
    import numpy as np
    import pandas as pd

    engine = sa.create_engine(url)

    def vectorised() -> dict[str, Any]:
        with engine.connect() as conn:
            frame = pd.read_sql(
                sa.text(f"SELECT event_type, at_us, event_id FROM attempt WHERE {FAILURE_SQL} "
                        "ORDER BY event_type, at_us"), conn)
        kind = pd.factorize(frame["event_type"])[0]
        t = frame["at_us"].to_numpy()
        m = len(t)
        end = np.arange(m) + (N - 1)
        valid = end < m
        valid[valid] &= kind[end[valid]] == kind[valid]
        qualifies = np.zeros(m, dtype=bool)
        qualifies[valid] = t[end[valid]] - t[valid] <= W_US
        starts = np.flatnonzero(qualifies)
        if len(starts) == 0:
            return {"clusters": 0}
        last_index = starts + (N - 1)
        previous_last = np.concatenate([[-1], t[last_index[:-1]]])
        same_kind = np.concatenate([[False], kind[starts[1:]] == kind[starts[:-1]]])
        new = ~same_kind | (t[starts] > previous_last)
        first = starts[new]
        last = np.maximum.reduceat(last_index, np.flatnonzero(new))
        # Label each failure with its cluster (or none) and count distinct events per cluster.
        depth = np.zeros(m + 1, dtype=np.int64)
        np.add.at(depth, first, 1)
        np.add.at(depth, last + 1, -1)
        inside = np.cumsum(depth)[:m] > 0
        opened = np.zeros(m, dtype=np.int64)
        opened[first] = 1
        members = pd.DataFrame({"c": (np.cumsum(opened) - 1)[inside],
                                "e": frame["event_id"].to_numpy()[inside]})
        events = members.groupby("c")["e"].nunique().to_numpy()
        return {"clusters": int((events >= E).sum())}

    return vectorised


def run_scan(url: str) -> Operation:
    engine = sa.create_engine(url)

    def scan() -> dict[str, Any]:
        count = 0
        with engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            query = f"SELECT event_type, at_us FROM attempt WHERE {FAILURE_SQL} ORDER BY event_type, at_us"
            if conn.dialect.name == "postgresql":
                cursor = raw.cursor(name="bench_scan")
                cursor.itersize = 10_000
            else:
                cursor = raw.cursor()
            cursor.execute(query)
            while rows := cursor.fetchmany(10_000):
                count += len(rows)
            cursor.close()
            conn.rollback()
        return {"failures": count}

    return scan


RUNNERS: dict[str, Callable[[str], Operation]] = {
    "rebuild": run_rebuild, "incremental": run_incremental, "incremental_late": run_incremental,
    "incremental_scattered": run_incremental,
    "naive_sql": run_naive_sql, "pandas": run_pandas, "scan": run_scan,
}


def measure(name: str, url: str) -> None:
    """Run one measurement in this process and print its result as JSON.

    Peak RSS is ``VmHWM`` of this process (``ru_maxrss`` would include the parent's peak: Linux keeps it
    across exec); ``base_rss_mb`` is the RSS before the measurement, with the libraries imported.
    """
    operation = RUNNERS[name](url)
    base = _status_mb("VmRSS")
    # The full garbage collection that a fresh process owes its imports (14 ms measured here) would
    # otherwise land in whichever operation allocates first: settle it before the clock starts, for every
    # measure alike (timeit goes further and turns the collector off while timing).
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    result = operation()
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.process_time() - cpu
    result["peak_rss_mb"] = _status_mb("VmHWM")
    result["base_rss_mb"] = base
    print(json.dumps(result))


def _status_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


def spawn(name: str, url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--measure", name, "--db", url],
                         check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- orchestration -----------------------------------------------------------------------------------------
def postgres_url(url: str, fresh: bool) -> str:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if fresh:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    admin.dispose()
    made = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return made.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def runs(
    name: str, url: str, count: int, before: Callable[[int], None] | None = None
) -> Iterator[dict[str, Any]]:
    for k in range(count):
        if before is not None:
            before(k)
        yield spawn(name, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="failures to generate (default 1,000,000)")
    parser.add_argument("--db", help="postgresql://... (default: SQLite in a temporary directory)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run (same --db)")
    parser.add_argument("--types", type=int, default=50, help="event types (default 50)")
    parser.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    parser.add_argument("--only", nargs="*", choices=MEASURES, default=list(MEASURES))
    parser.add_argument("--measure", choices=MEASURES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global TYPES, YEAR_US  # the shape of the generated history (the module's defaults: 50 types, a year)
    TYPES, YEAR_US = args.types, args.days * 86_400 * S
    if args.measure:
        measure(args.measure, args.db)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.db and args.db.startswith("postgres"):
            url = postgres_url(args.db, fresh=not args.reuse)
        else:
            url = args.db or f"sqlite:///{tmp}/bench.db"
        if not args.reuse:
            setup(url, args.n, args.seed)
        results: dict[str, dict[str, Any]] = {}
        for name in args.only:
            before = None
            if name.startswith("incremental"):
                spawn("rebuild", url)  # incremental runs follow a rebuild with the same rule
                before = new_failures_before(url, args.seed, LATE_SHARE[name])
            samples = list(runs(name, url, args.runs, before))
            results[name] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            print(f"{name:12s} " + "  ".join(f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v:,}"
                                              for k, v in results[name].items()), flush=True)
        report_ratios(results, sqlite=url.startswith("sqlite"))


def new_failures_before(url: str, seed: int, late_share: float) -> Callable[[int], None]:
    def before(run: int) -> None:
        add_new_failures(url, 1000, seed + 1000 + run, late_share)

    return before


def report_ratios(results: dict[str, dict[str, Any]], sqlite: bool) -> None:
    """The targets as ratios of wall time; on SQLite also of this process's CPU time (the database runs
    inside the process there, so CPU time is the fair measure on a busy machine)."""
    metrics = ["seconds", "cpu_seconds"] if sqlite else ["seconds"]
    for metric in metrics:
        t = {name: r[metric] for name, r in results.items()}
        if "rebuild" not in t:
            return
        print(f"-- ratios of {'wall' if metric == 'seconds' else 'CPU'} time")
        lines = [  # (label, numerator, denominator, target)
            ("naive SQL / rebuild", "naive_sql", "rebuild", ">= 3"),
            ("pandas / rebuild", "pandas", "rebuild", ">= 2"),
            ("rebuild / bare scan", "rebuild", "scan", "<= 10"),
            ("rebuild / incremental 1k", "rebuild", "incremental", ">= 100"),
            ("rebuild / incremental 1k late", "rebuild", "incremental_late", "(10 % late)"),
            ("rebuild / incremental 1k scattered", "rebuild", "incremental_scattered", ">= 20 (all late)"),
        ]
        for label, top, bottom, target in lines:
            if top in t and bottom in t:
                print(f"{label:30s} {t[top] / t[bottom]:8.2f}x   (target {target})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
