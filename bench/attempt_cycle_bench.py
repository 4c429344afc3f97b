"""Attempt cycle (issue 5, part 2): claim, run a no-op handler, record success - against Procrastinate.

Usage (from the repository root)::

    python bench/attempt_cycle_bench.py [--n 10000] [--workers 1,4] [-k 3] [--backends sqlite,postgresql]
                                        [--no-procrastinate] [--pg ADMIN_URL] [--smoke] [--json OUT]

Setup, untimed, on a fresh database per run: ``n`` due events (PENDING, imported with ``import_events``) for
us; ``n`` deferred no-op jobs (``task.batch_defer``) for Procrastinate, on a fresh database of the same
PostgreSQL server with its schema applied. Each worker process starts, connects, and waits at a start line;
the clock runs from the start signal until the last worker has drained the queue, so both sides are measured
on the processing phase only (no process start-up, no imports, no enqueueing).

- ours: each process runs ``Ledger.retry_due(noop)``, one pass of the foreground ``Worker`` with one
  handler slot: it claims only the event its handler is about to run (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL) and writes each outcome in the same transaction as the next claim (``Ledger.cycle``), each
  fenced by its own claim, until nothing is due. SQLite: one process; PostgreSQL: 1 and ``--workers``
  processes. (Before issue 10 the worker claimed batches of up to 50 and wrote their outcomes together;
  docs/benchmarks.md has both.)
- Procrastinate (its default PsycopgConnector, ``async def`` no-op task - its cheapest path, no thread hop):
  each process runs ``app.run_worker_async(wait=False, listen_notify=False, concurrency=1)``, which fetches
  and finishes one job per query until the queue is empty, then returns. Jobs are kept
  (``delete_jobs`` never), as our attempts are.

Reported: attempts (jobs) per second at the median of ``k`` interleaved runs, and ours/Procrastinate
(target at 4 workers on PostgreSQL: >= 2); the CPU time per attempt of the worker processes and of the
PostgreSQL backends (``ServerCpu``). Every run checks that all ``n`` were processed exactly once.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
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
    plain_pg,
    write_json,
)

from failure_aware import Ledger
from failure_aware.domain.timeutil import format_time

EVENT_TYPE = "bench.noop"
QUEUE = "bench"
START_TIMEOUT_S = 120


def noop(_event: object) -> None:
    """The handler: does nothing, so the cycle's own cost is what is measured."""


# -- setup ---------------------------------------------------------------------------------------------------
def seed_ours(url: str, n: int) -> None:
    """``n`` PENDING events, detected an hour ago (so due now)."""
    detected = format_time(datetime.now(UTC) - timedelta(hours=1))
    with Ledger(url) as ledger:
        ledger.import_events({"event_type": EVENT_TYPE, "key": f"job-{i}", "detected_at": detected}
                             for i in range(n))


def procrastinate_app(url: str, *, sync: bool = False) -> Any:
    """A Procrastinate app on ``url`` with the no-op task registered as ``noop``."""
    import logging

    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.ERROR)  # its per-app "instantiated in __main__" note
    connector = (procrastinate.SyncPsycopgConnector(conninfo=plain_pg(url)) if sync
                 else procrastinate.PsycopgConnector(conninfo=plain_pg(url)))
    app = procrastinate.App(connector=connector)

    @app.task(name="noop", queue=QUEUE)
    async def _noop() -> None:
        return None

    return app


def seed_procrastinate(url: str, n: int) -> None:
    """Procrastinate's schema and ``n`` deferred no-op jobs."""
    app = procrastinate_app(url, sync=True)
    with app.open():
        app.schema_manager.apply_schema()
        task = app.tasks["noop"]
        for start in range(0, n, 1000):
            task.batch_defer(*({} for _ in range(min(1000, n - start))))


# -- worker processes (module level: started with the spawn method) ------------------------------------------
def ours_worker(url: str, ready: Any, go: Any, results: Any) -> None:
    """Connect, wait for the start signal, run ``retry_due(noop)`` until nothing is due; report times."""
    ledger = Ledger(url)
    ledger.due(limit=1)  # open the connection before the clock starts
    ready.put(1)
    go.wait()
    start, cpu = time.perf_counter(), time.process_time()
    done = len(ledger.retry_due(noop))
    end, cpu = time.perf_counter(), time.process_time() - cpu
    ledger.close()
    results.put((start, end, done, cpu))


def procrastinate_worker(url: str, ready: Any, go: Any, results: Any) -> None:
    """Open the app, wait for the start signal, run a worker until the queue is empty; report times."""
    import asyncio

    app = procrastinate_app(url)

    async def run() -> tuple[float, float, float]:
        async with app.open_async():
            await app.check_connection_async()  # the pool is open before the clock starts
            ready.put(1)
            go.wait()
            start, cpu = time.perf_counter(), time.process_time()
            await app.run_worker_async(queues=[QUEUE], wait=False, listen_notify=False, concurrency=1,
                                       install_signal_handlers=False, delete_jobs="never")
            return start, time.perf_counter(), time.process_time() - cpu

    start, end, cpu = asyncio.run(run())
    results.put((start, end, -1, cpu))  # Procrastinate's count is read from its table afterwards


class ServerCpu:
    """CPU time of the PostgreSQL backends serving one database while a phase runs, read from ``/proc``.

    Only possible when the server runs on this machine (as in these runs); otherwise ``seconds`` is None.
    A sampling thread lists the database's backends every 0.1 s and keeps each one's latest user + system
    ticks; the result is their growth since ``start`` (a backend that exits between samples loses < 0.1 s).
    """

    def __init__(self, url: str) -> None:
        import threading

        from sqlalchemy.engine import make_url

        self.url, self.database = plain_pg(url), make_url(url).database
        self.base: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.readable = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _ticks(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)

    def _sample(self, conn: Any, into: dict[int, int]) -> None:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (self.database,)).fetchall()
        for (pid,) in rows:
            ticks = self._ticks(pid)
            if ticks is None:
                self.readable = False
            else:
                into[pid] = ticks

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            self._sample(conn, self.base)
            self._started.set()
            while not self._stop.wait(0.1):
                self._sample(conn, self.last)

    def start(self) -> None:
        """Take the baseline (the workers' connections are open by now) and start sampling."""
        import threading

        self._started = threading.Event()
        self._thread.start()
        self._started.wait(30)

    def stop(self) -> float | None:
        """Stop sampling; the backends' CPU seconds since ``start`` (None when /proc could not be read)."""
        self._stop.set()
        self._thread.join()
        if not self.readable:
            return None
        ticks = sum(t - self.base.get(pid, 0) for pid, t in self.last.items())
        return ticks / os.sysconf("SC_CLK_TCK")


Timings = tuple[float, int, float, float | None]  # wall s, attempts reported, workers' CPU s, server CPU s


def run_processes(target: Callable[..., None], url: str, count: int) -> Timings:
    """Start ``count`` worker processes, release them together.

    Returns the wall time from the release to the last one done, the attempts they report, the CPU time
    (user + system) the worker processes spent in that phase (a number the machine's noise barely moves),
    and on PostgreSQL the server backends' CPU time in that phase (``ServerCpu``).
    """
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(url, ready, go, results)) for _ in range(count)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=START_TIMEOUT_S)
    server = ServerCpu(url) if url.startswith("postgresql") else None
    if server is not None:
        server.start()
    go.set()
    reports = [results.get(timeout=3600) for _ in procs]
    server_cpu = server.stop() if server is not None else None
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a worker process exited with {proc.exitcode}")
    # perf_counter is CLOCK_MONOTONIC on Linux: one clock for every process of the machine.
    wall = max(r[1] for r in reports) - min(r[0] for r in reports)
    return wall, sum(r[2] for r in reports), sum(r[3] for r in reports), server_cpu


def processed_ours(url: str) -> int:
    """Events SUCCEEDED, when each has exactly one attempt (processed once); -1 otherwise."""
    from sqlalchemy import create_engine, func, select

    from failure_aware.storage.engine import parse_url
    from failure_aware.storage.tables import attempt, event_state

    engine = create_engine(parse_url(url))
    with engine.connect() as conn:
        succeeded = conn.execute(select(func.count()).where(event_state.c.state == "SUCCEEDED")).scalar_one()
        attempts = conn.execute(select(func.count()).select_from(attempt)).scalar_one()
    engine.dispose()
    return int(succeeded) if attempts == succeeded else -1


def processed_procrastinate(url: str) -> int:
    """Jobs that succeeded."""
    import psycopg

    with psycopg.connect(plain_pg(url)) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'").fetchone()
    return int(row[0]) if row else 0


# -- one measured configuration ------------------------------------------------------------------------------
def measure(dbs: Databases, side: str, backend: str, workers: int,
            n: int) -> tuple[float, float, float | None]:
    """One run on a fresh, seeded database: wall time of processing all ``n``, workers' and server's CPU."""
    url = dbs.new(backend, "cycle")
    try:
        if side.startswith("ours"):
            seed_ours(url, n)
            wall, done, cpu, server = run_processes(ours_worker, url, workers)
            finished = processed_ours(url)
        else:
            seed_procrastinate(url, n)
            wall, _, cpu, server = run_processes(procrastinate_worker, url, workers)
            done = finished = processed_procrastinate(url)
        if done != n or finished != n:
            raise RuntimeError(
                f"{side} {backend} x{workers}: processed {done}, succeeded {finished}, expected {n}")
        return wall, cpu, server
    finally:
        dbs.drop(url)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="due events / deferred jobs per run")
    parser.add_argument("--workers", default="1,4", help="PostgreSQL worker process counts")
    parser.add_argument("--no-procrastinate", action="store_true", help="measure our side only")
    args = parser.parse_args()
    n = 100 if args.smoke else args.n
    k = 1 if args.smoke else (args.repeat or 3)
    chosen = backends(args)
    if not args.no_procrastinate and importlib.util.find_spec("procrastinate") is None:
        print("Procrastinate is not installed (pip install procrastinate): measuring our side only",
              file=sys.stderr)
        args.no_procrastinate = True
    counts = [1, 2] if args.smoke else [int(x) for x in args.workers.split(",")]
    configs: list[tuple[str, str, int]] = []
    if "postgresql" in chosen:
        for w in counts:
            configs.append(("ours", "postgresql", w))
            if not args.no_procrastinate:
                configs.append(("procrastinate", "postgresql", w))
    if "sqlite" in chosen:
        configs.append(("ours", "sqlite", 1))
    series = {c: Series(f"{c[0]} {c[1]} x{c[2]}", n) for c in configs}
    cpu = {c: Series(f"{c[0]} {c[1]} x{c[2]} cpu", n) for c in configs}
    server_cpu: dict[tuple[str, str, int], list[float]] = {c: [] for c in configs}
    with Databases(args.pg) as dbs:
        for _ in range(k):  # interleaved: every configuration once per round
            for config in configs:
                wall, cpu_s, server_s = measure(dbs, *config, n)
                if server_s is not None:
                    server_cpu[config].append(server_s)
                series[config].times.append(wall)
                cpu[config].times.append(cpu_s)
                print(f"  {series[config].name}: {wall:.2f}s", file=sys.stderr, flush=True)
    rows = []
    for (side, backend, w), s in series.items():
        theirs = series.get(("procrastinate", backend, w)) if side.startswith("ours") else None
        ratio = f"**{s.rate / theirs.rate:.2f}**" if theirs else ""
        server = f"{statistics.median(server_cpu[(side, backend, w)]) / n * 1000:.2f}" \
            if server_cpu[(side, backend, w)] else "-"
        rows.append((side, backend, w, n, len(s.times), s.median, s.rate, ratio, s.spread(),
                     cpu[(side, backend, w)].median / n * 1000, server))
    print(f"\n### Attempt cycle: claim, no-op handler, record success ({n:,} per run)\n")
    print(markdown_table(("side", "database", "worker processes", "attempts", "runs", "median s",
                          "attempts/s", "ours/Procrastinate", "min-max s", "worker CPU ms/attempt",
                          "server CPU ms/attempt"), rows))
    write_json(args.json, {"bench": "attempt_cycle", "n": n,
                           "results": [{"config": list(c), **s.as_dict(), "worker_cpu_s": cpu[c].times,
                                        "server_cpu_s": server_cpu[c]}
                                       for c, s in series.items()]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
