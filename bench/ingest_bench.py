"""Bulk ingest (issue 5, part 1): ``Ledger.import_events`` against a raw-driver script writing the same rows.

Usage (from the repository root)::

    python bench/ingest_bench.py [--n 100000,1000000] [--backends sqlite,postgresql] [-k 3] [--rss]
                                 [--check] [--pg ADMIN_URL] [--smoke] [--json OUT]

Input: ``N`` SPEC-8 records, each an event with one failed attempt (a realistic mix of error messages, half
of them carrying ids so they are unique). Both sides start from a database with the failure-aware schema
(created untimed) and write the same rows into the same tables:

- ours: ``Ledger.import_events(records)`` - validation, normalisation, the state each event ends in,
  fingerprints, ids, and the writing (``COPY`` / ``executemany``), one transaction.
- raw: what a hand-written script would do with the driver and nothing else: ``sqlite3`` ``executemany`` of
  prepared rows in one transaction; psycopg 3 ``COPY ... FROM STDIN`` per table in one transaction. The rows
  (including each failure's fingerprint, the ``next_retry_at`` of the policy, the two transitions and the
  ``state_count`` totals) are built *before* timing, so the raw side times only the driver writing; the time
  to build them is reported on its own line ("raw: build rows"), because a real script would pay it too.

``--check`` compares the two databases table by table (all columns but the import's own wall-clock time,
``recorded_at_us`` / ``updated_at_us``) and runs ``Ledger.verify()`` on the raw one: it fails when the
baseline would not be writing the same thing. ``--rss`` measures the peak RSS of one import of the largest
``N`` in a fresh process (records fed lazily, so the input itself is not counted).

Reported: median seconds of ``k`` interleaved runs, events/s, and ours/raw throughput (target: >= 0.5).
"""

from __future__ import annotations

import random
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Databases,
    Series,
    backends,
    base_parser,
    interleave,
    markdown_table,
    peak_rss,
    plain_pg,
    ratio,
    sqlite_file,
    write_json,
)

from failure_aware import Ledger
from failure_aware.domain.policy import PolicySet, decide_after_failure
from failure_aware.domain.timeutil import format_time, from_us, to_us
from failure_aware.events.recording import failure_fingerprint
from failure_aware.storage import chain

BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
EVENT_TYPES = ("payment.webhook", "crm.sync", "email.send", "report.render", "search.index")
# (error type, message template): {n} varies per event (a unique message), {k} among a few values.
ERRORS = (
    ("TimeoutError", "upstream timed out after {k}s"),
    ("ConnectionError", "connection refused by 10.0.{k}.17:5432"),
    ("HTTPError", "HTTP 503 Service Unavailable from https://api.example.com/v1/orders/{n}"),
    ("ValueError", "invalid amount {n} for order ord_{n}: must be positive"),
    ("KeyError", "missing field 'customer_id' in payload of record {n}"),
    ("RateLimited", "rate limit exceeded: {k} requests per minute, retry after {k}s"),
)
IMPORT_ACTOR = "import"  # the actor import_events records (see --check)


# -- input ----------------------------------------------------------------------------------------------
def iter_records(n: int, seed: int = 5) -> Iterator[dict[str, Any]]:
    """``n`` SPEC-8 records, deterministic: one failed attempt each, detected 50 ms apart."""
    rng = random.Random(seed)
    for i in range(n):
        detected_us = BASE_US + i * 50_000
        error_type, template = ERRORS[rng.randrange(len(ERRORS))]
        yield {
            "event_type": EVENT_TYPES[i % len(EVENT_TYPES)],
            "key": f"evt_{i:08d}",
            "detected_at": format_time(from_us(detected_us)),
            "payload": {"order": i, "amount": rng.randrange(1, 100_000), "currency": "EUR"},
            "attempts": [{
                "at": format_time(from_us(detected_us + 5_000_000 + rng.randrange(1_000_000))),
                "outcome": "failed", "error_type": error_type,
                "error": template.format(n=i, k=rng.choice((5, 10, 30, 60))),
            }],
        }


# -- the raw baseline's rows ----------------------------------------------------------------------------
class RawRows:
    """The rows a hand-written script derives from the records: one tuple list per table."""

    def __init__(self, records: list[dict[str, Any]], now_us: int, policies: PolicySet | None = None) -> None:
        import json

        policies = policies or PolicySet()
        self.events: list[tuple[Any, ...]] = []
        self.states: list[tuple[Any, ...]] = []
        self.attempts: list[tuple[Any, ...]] = []
        self.transitions: list[tuple[Any, ...]] = []
        totals: Counter[str] = Counter()
        for event_id, rec in enumerate(records, 1):
            etype, detected_us = rec["event_type"], _us(rec["detected_at"])
            only = rec["attempts"][0]
            at_us, error_type, error = _us(only["at"]), only["error_type"], only["error"]
            decision = decide_after_failure(policies.for_type(etype), 1, error_type, from_us(at_us), event_id)
            assert decision.next_retry_at is not None  # a first failure is retried under the default policy
            next_us = to_us(decision.next_retry_at)
            payload = json.dumps(rec["payload"], separators=(",", ":"), ensure_ascii=False)
            fingerprint = failure_fingerprint(error_type, error)
            # The tamper-evidence chain (schema v5) a faithful script must write too: the event row, its
            # attempt, then its transitions, each hashed after the one before (failure_aware.storage.chain).
            event = {"event_type": etype, "key": rec["key"], "payload": payload,
                     "detected_at_us": detected_us, "recorded_at_us": now_us}
            head = chain.link(chain.EMPTY, "event_detected", event)
            tried = {"event_type": etype, "number": 1, "started_at_us": None, "at_us": at_us,
                     "outcome": "failed", "error_type": error_type, "error": error,
                     "fingerprint": fingerprint, "forced": False, "actor": IMPORT_ACTOR}
            head = chain.link(head, "attempt", tried)
            moves = [
                {"at_us": detected_us, "from_state": None, "to_state": "PENDING", "actor": IMPORT_ACTOR,
                 "reason": "imported: detected", "attempt_number": None},
                {"at_us": at_us, "from_state": "PENDING", "to_state": "FAILED", "actor": IMPORT_ACTOR,
                 "reason": "imported: attempt 1 failed", "attempt_number": 1},
            ]
            for move in moves:
                head = chain.link(head, "transition", move)
            self.events.append((event_id, etype, rec["key"], payload, detected_us, now_us,
                                event["chain_seq"], event["chain_hash"]))
            self.states.append((event_id, etype, "FAILED", detected_us, 1, 1, next_us, next_us,
                                None, None, None, None, False, error_type, error, at_us, now_us,
                                head.seq, head.hash))
            self.attempts.append((event_id, etype, 1, None, at_us, "failed", error_type, error,
                                  fingerprint, False, IMPORT_ACTOR, tried["chain_seq"], tried["chain_hash"]))
            for move in moves:
                self.transitions.append((event_id, move["at_us"], move["from_state"], move["to_state"],
                                         IMPORT_ACTOR, move["reason"], move["attempt_number"],
                                         move["chain_seq"], move["chain_hash"]))
            totals[etype] += 1
        self.counts = [(etype, "FAILED", n) for etype, n in sorted(totals.items())]
        self.attempt_totals = [(etype, "failed", n) for etype, n in sorted(totals.items())]

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        """(table, columns, rows), parents first."""
        return [
            ("event_detected", EVENT_COLUMNS, self.events),
            ("event_state", STATE_COLUMNS, self.states),
            ("attempt", ATTEMPT_COLUMNS, self.attempts),
            ("transition", TRANSITION_COLUMNS, self.transitions),
            ("state_count", ("event_type", "state", "n"), self.counts),
            ("attempt_total", ("event_type", "outcome", "n"), self.attempt_totals),
        ]


EVENT_COLUMNS = ("id", "event_type", "key", "payload", "detected_at_us", "recorded_at_us", "chain_seq",
                 "chain_hash")
STATE_COLUMNS = ("event_id", "event_type", "state", "detected_at_us", "attempt_count", "budget_failures",
                 "next_retry_at_us", "due_at_us", "claim_token", "claimed_by", "claimed_at_us",
                 "lease_expires_at_us", "claim_forced", "last_error_type", "last_error", "last_attempt_at_us",
                 "updated_at_us", "chain_seq", "chain_hash")
ATTEMPT_COLUMNS = ("event_id", "event_type", "number", "started_at_us", "at_us", "outcome", "error_type",
                   "error", "fingerprint", "forced", "actor", "chain_seq", "chain_hash")
TRANSITION_COLUMNS = ("event_id", "at_us", "from_state", "to_state", "actor", "reason", "attempt_number",
                      "chain_seq", "chain_hash")


def _us(text: str) -> int:
    from failure_aware.domain.timeutil import parse_time

    return to_us(parse_time(text))


def raw_write_sqlite(url: str, rows: RawRows) -> Callable[[], object]:
    """The step: sqlite3 ``executemany`` per table in one transaction (same pragmas as the product)."""
    conn = sqlite3.connect(sqlite_file(url), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")

    def step() -> None:
        conn.execute("BEGIN IMMEDIATE")
        for table, columns, data in rows.tables():
            marks = ", ".join("?" * len(columns))
            conn.executemany(f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({marks})', data)
        conn.execute("COMMIT")
        conn.close()

    return step


def raw_write_postgres(url: str, rows: RawRows) -> Callable[[], object]:
    """The step: psycopg 3 ``COPY FROM STDIN`` per table in one transaction, then the id sequence moved on."""
    import psycopg

    conn = psycopg.connect(plain_pg(url))

    def step() -> None:
        with conn.transaction(), conn.cursor() as cur:
            for table, columns, data in rows.tables():
                with cur.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
                    for row in data:
                        copy.write_row(row)
            cur.execute("SELECT setval(pg_get_serial_sequence('event_detected', 'id'), %s)",
                        (len(rows.events),))
        conn.close()

    return step


# -- ours -------------------------------------------------------------------------------------------------
def ours_step(url: str, records: Any) -> Callable[[], object]:
    """The step: one ``import_events`` into the (already created) database at ``url``."""
    ledger = Ledger(url)

    def step() -> None:
        report = ledger.import_events(records)
        ledger.close()
        imported = getattr(report, "imported", None)
        if imported is not None and records_len(records) is not None and imported != records_len(records):
            raise RuntimeError(f"import_events imported {imported} of {records_len(records)} records")

    return step


def records_len(records: Any) -> int | None:
    """How many records (None for a lazy iterable)."""
    return len(records) if isinstance(records, list) else None


def rss_import(backend: str, n: int, pg: str) -> Callable[[], object]:
    """For ``common.peak_rss``: the step of one import of ``n`` lazily generated records, in this process."""
    import atexit

    dbs = Databases(pg)
    atexit.register(dbs.close)
    url = dbs.new(backend, "rss")
    Ledger(url).close()
    return ours_step(url, iter_records(n))


# -- equivalence ------------------------------------------------------------------------------------------
# The moment of the import differs by design, and so do the chain hashes that cover it (verify checks those).
IMPORT_TIME_COLUMNS = {"recorded_at_us", "updated_at_us", "chain_hash"}


def table_contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table the import writes, as sorted row tuples, without the import-time columns."""
    from sqlalchemy import create_engine, select

    from failure_aware.storage.engine import parse_url
    from failure_aware.storage.tables import (
        attempt,
        attempt_total,
        event_detected,
        event_state,
        state_count,
        transition,
    )

    engine = create_engine(parse_url(url))
    out = {}
    with engine.connect() as conn:
        for table in (event_detected, event_state, attempt, transition, state_count, attempt_total):
            # Counter shards depend on the writing process: compare totals per (type, state).
            cols = [c for c in table.c if c.name not in IMPORT_TIME_COLUMNS | {"shard"} and not (
                c.name == "id" and table.name in ("attempt", "transition"))]
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(*cols)))
    engine.dispose()
    return out


def check_equivalent(ours_url: str, raw_url: str) -> list[str]:
    """Differences between the database ``import_events`` wrote and the one the raw script wrote."""
    problems = []
    ours, raw = table_contents(ours_url), table_contents(raw_url)
    for table in ours:
        if ours[table] != raw[table]:
            padded = raw[table] + [None] * len(ours[table])
            diff = next((a, b) for a, b in zip(ours[table], padded, strict=False) if a != b)
            problems.append(f"{table}: {len(ours[table])} vs {len(raw[table])} rows; first difference:\n"
                            f"    ours {diff[0]}\n    raw  {diff[1]}")
    with Ledger(raw_url, readonly=True) as ledger:
        report = ledger.verify()
        if not report.ok:
            problems.append(f"verify() of the raw database: {report}")
    return problems


# -- driver -------------------------------------------------------------------------------------------------
HEADERS = ("backend", "N", "runs", "ours s (median)", "raw s (median)", "ours ev/s", "raw ev/s",
           "ours/raw throughput", "ours min-max s", "raw min-max s", "ours client CPU s", "raw client CPU s",
           "ours/raw (client CPU)", "raw: build rows s", "ours/(raw + build) throughput")


class Report:
    """What one invocation measured: table rows, JSON results, and equivalence problems."""

    def __init__(self) -> None:
        self.rows: list[tuple[object, ...]] = []
        self.results: list[dict[str, Any]] = []
        self.failures: list[str] = []


def measure_backend(dbs: Databases, backend: str, records: list[dict[str, Any]], raw_rows: RawRows, *, k: int,
                    check: bool, report: Report) -> None:
    """``k`` interleaved runs of both sides on ``backend``; optionally compare the databases of the last.

    Building the raw rows is a third side of the same rounds, so "raw + build" can be compared with ours.
    """
    n = len(records)
    ours, raw = Series(f"ours {backend}", n), Series(f"raw {backend}", n)
    build = Series("raw: build rows", n)
    made: list[str] = []

    def fresh() -> str:
        url = dbs.new(backend, "ingest")
        Ledger(url).close()  # the schema, untimed, for both sides
        made.append(url)
        return url

    def prep_raw() -> Callable[[], object]:
        writer = raw_write_sqlite if backend == "sqlite" else raw_write_postgres
        return writer(fresh(), raw_rows)

    interleave(k, [(ours, lambda: ours_step(fresh(), records)), (raw, prep_raw),
                   (build, lambda: lambda: RawRows(records, now_us=BASE_US))])
    if check:
        report.failures += [f"{backend} n={n}: {p}" for p in check_equivalent(made[-2], made[-1])]
    for url in made:
        dbs.drop(url)
    cpu_ratio = raw.cpu_median / ours.cpu_median if ours.cpu_median else float("nan")
    both = raw.median + build.median
    report.rows.append((backend, n, k, ours.median, raw.median, ours.rate, raw.rate,
                        f"**{ratio(ours, raw):.2f}**", ours.spread(), raw.spread(),
                        ours.cpu_median, raw.cpu_median, f"{cpu_ratio:.2f}", build.median,
                        f"{both / ours.median:.2f}"))
    report.results.append({"backend": backend, "n": n, "ours": ours.as_dict(), "raw": raw.as_dict(),
                           "raw_build_rows": build.as_dict(), "ratio": ratio(ours, raw)})
    print(f"  {backend} n={n}: ours {ours.median:.2f}s raw {raw.median:.2f}s ratio {ratio(ours, raw):.2f}",
          file=sys.stderr, flush=True)


def measure_size(dbs: Databases, n: int, *, k: int, chosen: list[str], check: bool, report: Report) -> None:
    """Every backend at size ``n``."""
    records = list(iter_records(n))
    raw_rows = RawRows(records, now_us=BASE_US)
    for backend in chosen:
        measure_backend(dbs, backend, records, raw_rows, k=k, check=check, report=report)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", default="100000,1000000", help="comma-separated event counts")
    parser.add_argument("--rss", action="store_true", help="peak RSS of one import of the largest N")
    parser.add_argument("--check", action="store_true", help="compare the two databases (see above)")
    args = parser.parse_args()
    sizes = [500] if args.smoke else [int(x) for x in args.n.split(",")]
    chosen = backends(args)
    report = Report()
    with Databases(args.pg) as dbs:
        for n in sizes:
            k = args.repeat or (1 if args.smoke else 5 if n <= 200_000 else 3)
            measure_size(dbs, n, k=k, chosen=chosen, check=args.check or args.smoke, report=report)
    print("\n### Bulk ingest: import_events vs raw driver (one failed attempt per event)\n")
    print(markdown_table(HEADERS, report.rows))
    if args.rss:
        n = 2_000 if args.smoke else max(sizes)
        rss_rows = []
        for backend in chosen:
            rss = peak_rss("ingest_bench.py", "rss_import", {"backend": backend, "n": n, "pg": args.pg})
            rss_rows.append((backend, n, rss.peak_mib, rss.before_mib, rss.step_mib))
            report.results.append({"rss": {"backend": backend, "n": n, "peak_mib": rss.peak_mib,
                                           "before_mib": rss.before_mib}})
        print("\n### Peak RSS of one import (fresh process, records generated lazily)\n")
        print(markdown_table(("backend", "N", "peak RSS MiB", "RSS before MiB", "added by the import MiB"),
                             rss_rows))
    write_json(args.json, {"bench": "ingest", "results": report.results})
    for problem in report.failures:
        print(f"NOT EQUIVALENT: {problem}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
