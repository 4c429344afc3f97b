"""Retention (issue 16): archive the older half of a history while workers keep running.

Usage (from the repository root)::

    python bench/archive_bench.py [--n 1000000] [--workers 4] [--chunk 500] [--baseline-seconds 20]
                                  [--max-busy 0.25] [--backends postgresql] [--pg ADMIN_URL] [--vacuum-full]
                                  [--verify] [--smoke] [--json OUT]
                                  [--db URL [--seed-only | --seeded]] [--slice S --pause P]

Setup, untimed, on a fresh database: ``n`` finished events imported (``import_events``, one succeeded
attempt each, one in 50 DEAD after a failure), the older half in 2025, the newer half a day ago.

Measured, in one process run:
1. baseline: ``--workers`` processes each loop ``detect`` + ``run`` (a no-op handler: one claim, one
   attempt, one outcome) for ``--baseline-seconds``; their attempts per second;
2. the same workers keep going while ``Ledger.archive(before=2026-01-01, to=FILE.jsonl.gz)`` removes the
   older half; the archive's events per second (write phase, remove phase, whole), and the workers'
   attempts per second during it;
3. baseline again after, for ``--baseline-seconds``: the workers' rate without the archive is the mean of
   the two baselines, so drift (a growing database, a noisy neighbour) weighs on both sides.
With ``--slice S``, the archive is also held for ``--pause P`` seconds after every S seconds of it, and
the workers' rate in those windows is a second "without" (``Interleaved``): the rate "during" and the
archive's own rate never include the holds.
Reported: the ratio of the workers' rate during the archive to their rate without it (target >= 0.8), and
the database size before, after the archive, and (``--vacuum-full``) after ``VACUUM FULL`` (PostgreSQL) /
``VACUUM`` (SQLite): removed rows leave dead tuples until then. ``--verify`` runs ``verify`` at the end.

At millions of events the seeding takes longer than the measurement, and should not have to run in the
same quiet window: ``--db URL --seed-only`` seeds that (empty) database and keeps it; a later
``--db URL --seeded`` (same ``--n``) measures on it without seeding (the archive consumes it: seed again
for another run). With ``--db`` the database is never dropped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Databases, backends, base_parser, markdown_table, sqlite_file, write_json

from failure_aware import Ledger
from failure_aware.domain.timeutil import format_time

HORIZON = datetime(2026, 1, 1, tzinfo=UTC)
OLD_START = datetime(2025, 1, 1, tzinfo=UTC)
IMPORT_BATCH = 100_000
START_TIMEOUT_S = 120
MAX_ARCHIVE_S = 4 * 3600  # a bound on the measured phase, whatever the size
LIVE = "bench.live"  # the workers' event type
REPORT_EVERY_S = 60.0  # a line on stderr while the archive runs: a long run shows (and keeps) where it is


def records(start: int, stop: int, n: int) -> Any:
    """Events ``start..stop-1`` of ``n``: the first half in 2025 (archived), the second a day ago (kept)."""
    recent = datetime.now(UTC) - timedelta(days=1)
    for i in range(start, stop):
        old = i < n // 2
        at = OLD_START + timedelta(seconds=i) if old else recent + timedelta(microseconds=i)
        when = format_time(at)
        attempts: list[dict[str, Any]] = [{"at": when, "outcome": "succeeded"}]
        if i % 50 == 0:
            attempts = [{"at": when, "outcome": "failed", "error_type": "Gone", "error": "410 gone"}]
        record: dict[str, Any] = {"event_type": f"bench.type{i % 4}", "key": f"e{i}", "detected_at": when,
                                  "payload": {"order": i, "note": "x" * 64}, "attempts": attempts}
        if i % 50 == 0:
            record["state"] = "DEAD"
            record["transitions"] = [
                {"at": when, "from_state": None, "to_state": "PENDING", "actor": "bench",
                 "reason": "detected"},
                {"at": when, "from_state": "PENDING", "to_state": "DEAD", "actor": "bench",
                 "reason": "permanent", "attempt_number": 1},
            ]
        yield record


def seed(url: str, n: int) -> None:
    with Ledger(url) as ledger:
        for start in range(0, n, IMPORT_BATCH):
            ledger.import_events(records(start, min(n, start + IMPORT_BATCH), n))


def noop(_event: object) -> None:
    """The workers' handler: does nothing, so the ledger's own cost is what is measured."""


def worker(url: str, index: int, ready: Any, go: Any, stop: Any, count: Any, run: str) -> None:
    """Loop detect + run until ``stop``; ``count`` is this worker's attempts so far; ``run`` makes the keys
    new in a database that earlier runs left events in (``--seeded``)."""
    with Ledger(url) as ledger:
        ready.wait()  # a barrier: every worker connected
        go.wait(START_TIMEOUT_S)
        n = 0
        while not stop.is_set():
            event = ledger.detect(LIVE, {"w": index}, key=f"{run}-w{index}-{n}")
            ledger.run(event.id, noop)
            n += 1
            count.value = n


def size_bytes(url: str) -> int:
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()


def analyze(url: str) -> None:
    """Planner statistics for the seeded history, as autovacuum gives a live database in its first minutes.
    Without them (a server with autovacuum off, as the shared test server is), PostgreSQL guesses millions
    of rows for a page's queries and JIT-compiles each one: a page of 1,000 events took 1.8 s instead of
    0.04 s at 10M events (measured)."""
    if url.startswith("sqlite"):
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()


def compact(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM FULL" if engine.dialect.name == "postgresql" else "VACUUM"))
    finally:
        engine.dispose()


def total(counts: list[Any]) -> int:
    return sum(c.value for c in counts)


def events_in(url: str) -> int:
    """The seeded events in the database (the workers' own ``bench.live`` events of earlier runs aside)."""
    with Ledger(url) as ledger:
        return sum(ledger.state_counts().values()) - sum(ledger.state_counts(event_type=LIVE).values())


def run_one(url: str, n: int, workers: int, chunk: int, baseline_s: float, vacuum: bool, verify: bool,
            max_busy: float, seeded: bool = False, slice_s: float = 0.0, pause_s: float = 0.0,
            before: datetime = HORIZON) -> dict[str, Any]:
    t0 = time.perf_counter()
    if seeded:
        found = events_in(url)
        if found != n:
            raise SystemExit(f"--seeded: the database holds {found:,} events, not --n {n:,}; seed it again")
    else:
        seed(url, n)
    seed_s = time.perf_counter() - t0
    analyze(url)
    size_before = size_bytes(url)
    result = measure(url, workers, chunk, baseline_s, max_busy, slice_s, pause_s, before)
    size_after = size_bytes(url)
    size_compacted = None
    if vacuum:
        compact(url)
        size_compacted = size_bytes(url)
    verified = None
    if verify:
        with Ledger(url) as ledger:
            verified = ledger.verify().ok
    return {"n": n, "workers": workers, "chunk": chunk, "max_busy": max_busy, "seed_s": seed_s, **result,
            "size_before": size_before, "size_after": size_after, "size_compacted": size_compacted,
            "verify_ok": verified}


class Interleaved:
    """Baseline windows inside the archive: after every ``slice_s`` seconds of archiving, the progress
    callback (called between units, outside every transaction) holds the archive for ``pause_s`` seconds
    and counts the workers' attempts meanwhile. Windows with and without the archive then alternate all
    through a long run, so a load that drifts (other people's processes on a shared machine, a growing
    database) weighs on both sides alike; the before/after baselines only see its two ends."""

    SETTLE_S = 1.0  # after the archive stops, before the window opens (its last statements finish)

    def __init__(self, counts: list[Any], slice_s: float, pause_s: float) -> None:
        self.counts, self.slice_s, self.pause_s = counts, slice_s, pause_s
        self.running_s = self.paused_s = self.held_s = 0.0
        self.running_attempts = self.paused_attempts = 0
        self.windows = 0
        self.restart()

    def restart(self) -> None:
        """Start a window of archiving (now)."""
        self.started, self.started_attempts = time.perf_counter(), total(self.counts)

    def _close(self) -> None:
        self.running_s += time.perf_counter() - self.started
        self.running_attempts += total(self.counts) - self.started_attempts

    def between_units(self) -> None:
        if self.slice_s <= 0 or time.perf_counter() - self.started < self.slice_s:
            return
        self._close()
        held = time.perf_counter()
        time.sleep(self.SETTLE_S)
        a, t = total(self.counts), time.perf_counter()
        time.sleep(self.pause_s)
        self.paused_attempts += total(self.counts) - a
        self.paused_s += time.perf_counter() - t
        self.windows += 1
        self.held_s += time.perf_counter() - held
        self.restart()

    def finish(self) -> None:
        self._close()

    def so_far(self) -> str:
        """The figures so far, for a progress line."""
        running = self.running_s + time.perf_counter() - self.started
        attempts = self.running_attempts + total(self.counts) - self.started_attempts
        windows = f"{self.paused_attempts / self.paused_s:,.1f}/s" if self.paused_s else "-"
        return (f"archive {running:,.0f} s, workers {attempts / max(running, 1e-9):,.1f}/s with it, "
                f"{windows} in {self.windows} windows")

    def ratio(self) -> float | None:
        if not self.windows or not self.running_s:
            return None
        return (self.running_attempts / self.running_s) / (self.paused_attempts / self.paused_s)


def _progress(phases: dict[str, float], interleaved: Interleaved, began: float) -> Any:
    """The archive's progress callback: notes when removal starts, prints a line now and then, bounds the
    run, and holds the archive for the interleaved windows."""
    def progress(phase: str, done: int, all_: int | None) -> None:
        if phase == "remove" and "remove_start" not in phases:
            phases["remove_start"] = time.perf_counter()
            phases["held_before_remove"] = interleaved.held_s
        if time.perf_counter() - began > MAX_ARCHIVE_S:
            raise RuntimeError("archive bench: over the time bound")
        if time.perf_counter() - phases.get("reported", began) >= REPORT_EVERY_S:
            phases["reported"] = time.perf_counter()
            print(f"{time.strftime('%H:%M:%S')} {phase} {done:,}/{all_ or 0:,} "
                  f"{interleaved.so_far()} load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        interleaved.between_units()

    return progress


def measure(url: str, workers: int, chunk: int, baseline_s: float, max_busy: float,
            slice_s: float = 0.0, pause_s: float = 0.0, before: datetime = HORIZON) -> dict[str, Any]:
    """Baseline, archive (with interleaved baseline windows when ``slice_s``), baseline, with the workers
    running throughout."""
    ctx = mp.get_context("spawn")
    ready, go, stop = ctx.Barrier(workers + 1), ctx.Event(), ctx.Event()
    counts = [ctx.Value("q", 0, lock=False) for _ in range(workers)]
    run = uuid.uuid4().hex[:8]
    procs = [ctx.Process(target=worker, args=(url, i, ready, go, stop, counts[i], run))
             for i in range(workers)]
    for p in procs:
        p.start()
    phases: dict[str, float] = {}
    interleaved = Interleaved(counts, slice_s, pause_s)
    try:
        ready.wait(START_TIMEOUT_S)
        go.set()
        time.sleep(min(2.0, baseline_s / 4))  # warm-up, not counted
        a0, s0 = total(counts), time.perf_counter()
        time.sleep(baseline_s)
        a1, s1 = total(counts), time.perf_counter()
        base_before = (a1 - a0) / (s1 - s0)

        progress = _progress(phases, interleaved, s1)

        target = Path(tempfile.mkdtemp(prefix="fa-archive-bench-")) / "archive.jsonl.gz"
        with Ledger(url) as ledger:
            s2 = time.perf_counter()
            interleaved.restart()
            report = ledger.archive(before, to=target, chunk_events=chunk, on_progress=progress,
                                    max_busy=max_busy)
            interleaved.finish()
            s3 = time.perf_counter()
        time.sleep(min(2.0, baseline_s / 4))
        a4, s4 = total(counts), time.perf_counter()
        time.sleep(baseline_s)
        a5, s5 = total(counts), time.perf_counter()
        base_after = (a5 - a4) / (s5 - s4)
    finally:
        stop.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    file_bytes = target.stat().st_size
    target.unlink()
    remove_start = phases.get("remove_start", s3)
    held_write = phases.get("held_before_remove", interleaved.held_s)
    archive_s = s3 - s2 - interleaved.held_s  # the archive's own time, without the bench's holds
    write_s = remove_start - s2 - held_write
    remove_s = archive_s - write_s
    during = interleaved.running_attempts / interleaved.running_s
    without = (base_before + base_after) / 2
    return {
        "archived": report.removed_events, "archive_s": archive_s, "write_s": write_s, "remove_s": remove_s,
        "archive_events_per_s": report.removed_events / archive_s,
        "remove_events_per_s": report.removed_events / max(1e-9, remove_s),
        "workers_base_before": base_before, "workers_base_after": base_after, "workers_during": during,
        "ratio": during / without if without else None, "file_bytes": file_bytes,
        "windows": interleaved.windows,
        "workers_in_windows": (interleaved.paused_attempts / interleaved.paused_s
                               if interleaved.windows else None),
        "ratio_interleaved": interleaved.ratio(),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events in the history (half archived)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=500, help="events removed per transaction")
    parser.add_argument("--max-busy", type=float, default=0.25,
                        help="the archive's pacing (Ledger.archive max_busy; 1: flat out)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--slice", type=float, default=0.0,
                        help="hold the archive for --pause seconds after every SLICE seconds of it, and "
                             "count the workers' rate in those windows too (0: no windows)")
    parser.add_argument("--pause", type=float, default=20.0, help="length of each interleaved window")
    parser.add_argument("--archive-events", type=int, default=None,
                        help="archive only the oldest this many events (default: the whole older half)")
    parser.add_argument("--vacuum-full", action="store_true", help="also measure the size after VACUUM FULL")
    parser.add_argument("--verify", action="store_true", help="run verify at the end (slow at millions)")
    parser.add_argument("--db", default=None, help="measure on this database (kept, never dropped)")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--seed-only", action="store_true", help="with --db: seed it and stop")
    steps.add_argument("--seeded", action="store_true", help="with --db: it holds --n seeded events already")
    parser.set_defaults(backends="postgresql")
    args = parser.parse_args()
    if (args.seed_only or args.seeded) and not args.db:
        raise SystemExit("--seed-only and --seeded need --db URL")
    if args.db and args.seed_only:
        t0 = time.perf_counter()
        seed(args.db, args.n)
        print(f"seeded {args.n:,} events in {time.perf_counter() - t0:,.0f} s")
        return
    n, baseline_s = (4000, 2.0) if args.smoke else (args.n, args.baseline_seconds)
    if args.smoke:
        args.slice, args.pause = 0.5, 0.5  # the windows are exercised too
    old_half = n // 2
    if args.archive_events is not None and not 1 <= args.archive_events <= old_half:
        raise SystemExit(f"--archive-events 1..{old_half:,} (the older half)")
    # the older half's events are a second apart from OLD_START: the horizon after the first k of them
    before = HORIZON if args.archive_events is None else OLD_START + timedelta(seconds=args.archive_events)
    if n < 2 or args.workers < 1 or not 1 <= args.chunk <= 100_000 or baseline_s <= 0 \
            or not 0 < args.max_busy <= 1:
        raise SystemExit("--n >= 2, --workers >= 1, --chunk 1..100000, --baseline-seconds > 0, "
                         "0 < --max-busy <= 1")
    rows, results = [], []
    with Databases(args.pg) as dbs:
        for backend in (["given"] if args.db else backends(args)):
            url = args.db or dbs.new(backend, "archive")
            result = run_one(url, n, args.workers, args.chunk, baseline_s, args.vacuum_full or args.smoke,
                             args.verify or args.smoke, args.max_busy, seeded=args.seeded,
                             slice_s=args.slice, pause_s=args.pause, before=before)
            result["backend"] = backend
            results.append(result)
            if args.smoke and not result["verify_ok"]:
                raise SystemExit("verify failed after the archive")
            mib = 1024 * 1024
            rows.append([
                backend, f"{n:,}", f"{result['archived']:,}", args.workers,
                f"{result['archive_s']:.1f} s ({result['write_s']:.1f} + {result['remove_s']:.1f})",
                f"{result['archive_events_per_s']:,.0f}",
                f"{(result['workers_base_before'] + result['workers_base_after']) / 2:,.0f}",
                f"{result['workers_during']:,.0f}", f"{result['ratio']:.2f}",
                "-" if result["ratio_interleaved"] is None else
                f"{result['ratio_interleaved']:.2f} ({result['windows']} windows, "
                f"{result['workers_in_windows']:,.0f}/s in them)",
                f"{result['size_before'] / mib:,.0f} / {result['size_after'] / mib:,.0f}"
                + ("" if result["size_compacted"] is None else f" / {result['size_compacted'] / mib:,.0f}"),
                f"{result['file_bytes'] / mib:,.1f}",
            ])
            if not args.db:
                dbs.drop(url)
    print(markdown_table(
        ["backend", "events", "archived", "workers", "archive time (write + remove)", "archived/s",
         "workers attempts/s without", "during", "ratio", "ratio, interleaved",
         "DB MiB before / after (/ compacted)",
         "file MiB (gzip)"], rows))
    write_json(args.json, {"results": results})


if __name__ == "__main__":
    main()
