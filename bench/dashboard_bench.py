"""The dashboard (issue 13): p95 of every page on a large database, through a real server and a session.

Usage (from the repository root)::

    python bench/dashboard_bench.py [--n 100000,1000000] [--backends sqlite,postgresql] [--requests 60]
                                    [--pg ADMIN_URL] [--smoke] [--json OUT]
    python bench/dashboard_bench.py --db URL --reuse [--requests 60]     # a database built elsewhere

Builds (untimed) ``--n`` events of history with the raw SQL builder of ``health_bench.py`` plus its
"live" set of recent activity (5 % of the history DEAD, recent failures, stuck claims, pending work),
correlates it, then starts a server process (uvicorn over ``create_app``, the clock fixed at the
builder's "now") and signs in with a session cookie (a one-off login token held by the server process
only: nothing is written to the database, so ``--reuse`` leaves an existing database as it was). Each
page is requested ``--requests`` times in a row after 3 warm-up requests; p50, p95 and max in
milliseconds. Target (SPEC 11): p95 at most 300 ms at 10 million events on PostgreSQL, 1 million on SQLite.

``--reuse`` measures an existing database (the lead's 10M PostgreSQL one) with the real clock (or
``--now``); types and ids are read from the database through the Ledger.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from common import (
    REPO_ROOT,
    Databases,
    backends,
    base_parser,
    markdown_table,
    stop_process,
    wait_until_serving,
)
from common import write_json as save_json

from failure_aware import Ledger
from failure_aware.config import Config

READY_SECONDS = 60.0
TIMEOUT = httpx.Timeout(120.0)
SECRET_ENV = "FAILURE_AWARE_BENCH_LOGIN"


def serve_child(url: str, port: int, now: str | None) -> None:
    """``--serve``: uvicorn over a ledger (clock fixed at ``now`` if given) whose login token's secret is
    in the environment (never in the database)."""
    import uvicorn

    from failure_aware.domain.timeutil import utc_now
    from failure_aware.domain.tokens import secret_hash
    from failure_aware.server import create_app
    from failure_aware.server.auth import LoginToken

    made, _ = LoginToken.make()
    login = LoginToken(made.token, secret_hash(os.environ[SECRET_ENV]))
    clock = utc_now
    if now:
        moment = datetime.fromisoformat(now)
        clock = lambda: moment  # noqa: E731
    ledger = Ledger(url, config=Config(), clock=clock)
    uvicorn.run(create_app(ledger, login=login), host="127.0.0.1", port=port, log_level="warning")


class Server:
    """This script's ``--serve`` child on a free port of 127.0.0.1."""

    def __init__(self, url: str, now: str | None, log: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        args = [sys.executable, str(Path(__file__).resolve()), "--serve", url, "--port", str(self.port)]
        if now:
            args += ["--now", now]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                            env={**os.environ, SECRET_ENV: self.secret})
        wait_until_serving(self.process, self.base, log, READY_SECONDS)

    def stop(self) -> None:
        stop_process(self.process)


def build(url: str, n: int) -> None:
    import health_bench

    started = time.monotonic()
    health_bench.build_history(url, n, 0)
    health_bench.build_live(url)
    with Ledger(url, config=Config(), clock=lambda: health_bench.NOW) as ledger:
        ledger.correlate(rebuild=True)
    print(f"  built and correlated {n:,} events in {time.monotonic() - started:.0f}s", file=sys.stderr)


def pages(url: str) -> list[tuple[str, str]]:
    """The pages to measure, with ids and types read from the database."""
    with Ledger(url, config=Config(), readonly=True) as ledger:
        newest = ledger.events(limit=1)
        dead = ledger.events(state="DEAD", limit=1)
        kinds = sorted({e.event_type for e in ledger.events(limit=50)})
        clusters = ledger.clusters(limit=1)
    kind = kinds[0] if kinds else "none"
    found = [
        ("overview", "/"),
        ("events", "/events"),
        ("events, state=FAILED", "/events?state=FAILED"),
        ("events, state=DEAD", "/events?state=DEAD"),
        ("events, type", f"/events?type={kind}"),
        ("events, 3rd page", ""),  # filled in by measure(): follows the "older" link twice
        ("event", f"/events/{(dead or newest)[0].id}" if (dead or newest) else "/events/1"),
        ("dead letters", "/dead"),
        ("clusters", "/clusters"),
        ("incidents", "/incidents"),
        ("health", "/health"),
        ("bulk revive dry run (died within 1h)", "/revive?within=1h"),
    ]
    if clusters:
        found.append(("cluster", f"/clusters/{clusters[0].id}"))
        found.append(("events, cluster", f"/events?cluster={clusters[0].id}"))
    return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def third_page(client: httpx.Client) -> str:
    import re

    path = "/events"
    for _ in range(2):
        found = re.search(r'rel="next" href="([^"]+)"', client.get(path).text)
        if not found:
            return path
        path = found.group(1).replace("&amp;", "&")
    return path


def measure(url: str, now: str | None, requests: int, label: str, events: int, workdir: Path
            ) -> list[dict[str, Any]]:
    server = Server(url, now, workdir / f"serve-{label}.log")
    results = []
    try:
        with httpx.Client(base_url=server.base, timeout=TIMEOUT) as client:
            signed = client.get(f"/login?token={server.secret}")
            if "fa_session" not in client.cookies:
                raise SystemExit(f"could not sign in: {signed.status_code}")
            for name, given in pages(url):
                path = given or third_page(client)
                for _ in range(3):  # warm-up
                    answer = client.get(path)
                    if answer.status_code != 200:
                        raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append(time.perf_counter() - started)
                results.append({"backend": label, "events": events, "page": name, "path": path,
                                "requests": requests, "p50_ms": 1000 * statistics.median(times),
                                "p95_ms": 1000 * percentile(times, 95), "max_ms": 1000 * max(times)})
    finally:
        server.stop()
    return results


def main() -> int:
    if "--serve" in sys.argv:
        argv = sys.argv
        serve_child(argv[argv.index("--serve") + 1], int(argv[argv.index("--port") + 1]),
                    argv[argv.index("--now") + 1] if "--now" in argv else None)
        return 0
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", default="100000,1000000", help="sizes of the databases built")
    parser.add_argument("--requests", type=int, default=60, help="requests per page")
    parser.add_argument("--db", default=None, help="measure this existing database (with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="do not build: measure --db as it is")
    parser.add_argument("--now", default=None, help="with --reuse: the server's clock (RFC 3339)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dashboard_bench_"))
    results: list[dict[str, Any]] = []
    if args.reuse:
        if not args.db:
            parser.error("--reuse needs --db URL")
        with Ledger(args.db, config=Config(), readonly=True) as ledger:
            events = sum(ledger.state_counts().values())
        results += measure(args.db, args.now, args.requests, args.db.split(":")[0], events, workdir)
    else:
        import health_bench

        sizes = [int(s) for s in args.n.split(",") if s.strip()]
        requests = args.requests
        if args.smoke:
            sizes, requests = [2000], 5
        with Databases(args.pg) as databases:
            for backend in backends(args):
                for n in sizes:
                    url = databases.new(backend, f"dash{n}")
                    try:
                        build(url, n)
                        results += measure(url, health_bench.NOW.isoformat(), requests, backend, n, workdir)
                    finally:
                        databases.drop(url)
    print(f"\n## Dashboard pages: {args.requests if not args.smoke else 5} sequential requests each, "
          "one signed-in session\n")
    print(markdown_table(["backend", "events", "page", "p50 ms", "p95 ms", "max ms"],
                         [[r["backend"], f"{r['events']:,}", r["page"], f"{r['p50_ms']:.1f}",
                           f"**{r['p95_ms']:.1f}**", f"{r['max_ms']:.1f}"] for r in results]))
    save_json(args.json, {"pages": results})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
