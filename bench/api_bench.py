"""The HTTP API (issue 12): is ``serve`` a thin layer, and are its reads fast on a large database?

Usage (from the repository root)::

    python bench/api_bench.py [--ops 4000] [--clients 16] [--client stdlib|httpx] [--n 1000000,10000000]
                              [--requests 300] [--db URL [--reuse]] [--backends postgresql] [-k 3]
                              [--pg ADMIN_URL] [--smoke] [--json OUT]

Part 1, throughput (a fresh database per backend): ``--ops`` times *detect + report* (an event detected,
then a failed attempt reported on it), made by ``--clients`` concurrent clients

- over HTTP: one ``failure-aware serve`` process (uvicorn, the real command), 16 threads each with its own
  keep-alive connection: ``POST /api/v1/events`` then ``POST /api/v1/events/{id}/attempts``, with a
  ``record`` token (so every request is authenticated). The clients use the standard library's
  ``http.client`` by default: they share the 2 cores with the server, and httpx (``--client httpx``) costs
  several times more CPU per request, which would be charged to the server's side;
- in-process: the same calls on one ``Ledger`` (``detect`` then ``report``) by 16 threads;

interleaved ``k`` times (HTTP, in-process, HTTP, ...), each run with its own keys. Inside the clock: the
calls only (the server is started and the threads are created before). Reported: operations per second
(one operation = the two calls), medians, and HTTP / in-process. Target on PostgreSQL: at least 0.5.

Part 2, latency on a large database (``--n`` events of history, built untimed by ``big_ledger.py`` on
PostgreSQL, the raw SQL builder of ``health_bench.py`` on SQLite, plus its "live" set of recent activity;
``--db URL`` builds into that database and keeps it, ``--reuse`` uses it as it is when it holds ``--n``):
one ``serve`` process whose clock is fixed at the builder's "now" (a child of this script: ``--serve``),
then ``--requests`` sequential requests each of ``GET /metrics``, ``GET /api/v1/events`` (the first page,
50 events), ``GET /api/v1/events?state=FAILED`` and the third page of a listing followed by its cursor;
p50 and p95 in milliseconds. Target: p95 at most 50 ms at 10M events on PostgreSQL.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from common import (
    REPO_ROOT,
    Databases,
    Series,
    backends,
    base_parser,
    interleave,
    markdown_table,
    ratio,
    stop_process,
    wait_until_serving,
)
from common import write_json as save_json
from sqlalchemy import text

from failure_aware import Ledger
from failure_aware.config import Config

READY_SECONDS = 60.0
TIMEOUT = httpx.Timeout(60.0)


# -- a serve process ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process on 127.0.0.1: ``failure-aware serve``, or this script's ``--serve`` child."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen([*args, "--port", str(self.port)], stdout=out,
                                            stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        wait_until_serving(self.process, self.base, log, READY_SECONDS)

    def stop(self) -> None:
        stop_process(self.process)


def serve_command(url: str) -> list[str]:
    return [sys.executable, "-m", "failure_aware", "--db", url, "serve", "--host", "127.0.0.1"]


def serve_child(url: str, port: int, now: str) -> None:
    """``--serve``: uvicorn over a ledger whose clock stands at ``now`` (the large database's "now")."""
    import uvicorn

    from failure_aware.server import create_app

    moment = datetime.fromisoformat(now)
    ledger = Ledger(url, config=Config(), clock=lambda: moment)
    uvicorn.run(create_app(ledger), host="127.0.0.1", port=port, log_level="warning")


# -- part 1: throughput --------------------------------------------------------------------------------------
def spread(ops: int, clients: int) -> list[range]:
    per = ops // clients
    return [range(i * per, (i + 1) * per if i < clients - 1 else ops) for i in range(clients)]


class Client:
    """One keep-alive HTTP/1.1 connection (the standard library's ``http.client``), as a load generator.

    The benchmark's 16 clients share the machine's CPU with the server they measure; httpx costs several
    times more CPU per request than ``http.client`` (its models, hooks and pool), which a benchmark of the
    server would charge to the server's side. Real clients run elsewhere.
    """

    def __init__(self, base: str, secret: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT.read)
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        self.conn.request("POST", path, json.dumps(body), self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise SystemExit(f"POST {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def get(self, path: str) -> None:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        response.read()

    def close(self) -> None:
        self.conn.close()


class HttpxClient(Client):
    """The same with an ``httpx.Client`` (``--client httpx``): what a Python caller would likely use."""

    def __init__(self, base: str, secret: str) -> None:
        self.session = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"},
                                    timeout=TIMEOUT)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.session.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> None:
        self.session.get(path)

    def close(self) -> None:
        self.session.close()


CLIENTS: dict[str, type[Client]] = {"stdlib": Client, "httpx": HttpxClient}


def http_side(base: str, secret: str, ops: int, clients: int, kind: type[Client] = Client
              ) -> Callable[[], Callable[[], object]]:
    def prepare() -> Callable[[], object]:
        run_id = uuid.uuid4().hex[:8]
        sessions = [kind(base, secret) for _ in range(clients)]
        for session in sessions:  # open each keep-alive connection outside the clock
            session.get("/api/v1/openapi.json")
        pool = ThreadPoolExecutor(clients)

        def one_client(session: Client, share: range) -> None:
            for i in share:
                made = session.post("/api/v1/events", {"event_type": f"bench.t{i % 4}",
                                                       "key": f"{run_id}-{i}", "payload": {"i": i}})
                session.post(f"/api/v1/events/{made['id']}/attempts",
                             {"outcome": "failed", "error_type": "Timeout", "error": "slow"})

        def step() -> object:
            try:
                for future in [pool.submit(one_client, s, share) for s, share in
                               zip(sessions, spread(ops, clients), strict=True)]:
                    future.result()
            finally:
                pool.shutdown()
                for session in sessions:
                    session.close()
            return None

        return step
    return prepare


def local_side(ledger: Ledger, ops: int, clients: int) -> Callable[[], Callable[[], object]]:
    def prepare() -> Callable[[], object]:
        run_id = uuid.uuid4().hex[:8]
        pool = ThreadPoolExecutor(clients)
        list(pool.map(lambda _: None, range(clients)))  # threads started outside the clock

        def one_client(share: range) -> None:
            for i in share:
                event = ledger.detect(f"bench.t{i % 4}", {"i": i}, key=f"{run_id}-{i}", actor="bench")
                ledger.report(event.id, False, error_type="Timeout", error="slow", actor="bench")

        def step() -> object:
            try:
                for future in [pool.submit(one_client, share) for share in spread(ops, clients)]:
                    future.result()
            finally:
                pool.shutdown()
            return None

        return step
    return prepare


def throughput(databases: Databases, backend: str, ops: int, clients: int, k: int, workdir: Path,
               client: str = "stdlib") -> dict[str, Any]:
    url = databases.new(backend, "api")
    ledger = Ledger(url, config=Config())
    secret = ledger.create_token("bench", "record", actor="bench").secret
    server = Server(serve_command(url), workdir / f"serve-{backend}.log")
    try:
        http, local = Series("http", ops), Series("in-process", ops)
        interleave(k, [(http, http_side(server.base, secret, ops, clients, CLIENTS[client])),
                       (local, local_side(ledger, ops, clients))])
    finally:
        server.stop()
        ledger.close()
    return {"backend": backend, "ops": ops, "clients": clients, "client": client, "runs": k,
            "http": http.as_dict(),
            "in_process": local.as_dict(), "http_over_in_process": ratio(http, local),
            "http_spread": http.spread(), "in_process_spread": local.spread()}


# -- part 2: latency on a large database -------------------------------------------------------------------
def build_large(url: str, n: int) -> None:
    import health_bench

    started = time.monotonic()
    health_bench.build_history(url, n, 0)
    health_bench.build_live(url)
    with Ledger(url, config=Config()) as ledger, ledger.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM attempt_total"))
        conn.execute(text("INSERT INTO attempt_total (event_type, outcome, n) "
                          "SELECT event_type, outcome, count(*) FROM attempt GROUP BY event_type, outcome"))
    print(f"  built {n:,} events in {time.monotonic() - started:.0f}s", file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(databases: Databases, backend: str, n: int, requests: int, workdir: Path,
            db: str | None = None, reuse: bool = False) -> list[dict[str, Any]]:
    import big_ledger
    import health_bench

    if db is not None:  # a database kept between runs (big_ledger.py): built unless it holds n events
        url = db
        big_ledger.ensure(url, n, reuse=reuse, log=lambda line: print(line, file=sys.stderr))
    else:
        url = databases.new(backend, f"api{n}")
        if backend == "postgresql":
            started = time.monotonic()
            big_ledger.build(url, n, log=lambda line: print(line, file=sys.stderr))
            print(f"  built {n:,} events in {time.monotonic() - started:.0f}s", file=sys.stderr)
        else:
            build_large(url, n)
    token_name = f"bench-read-{uuid.uuid4().hex[:8]}"
    with Ledger(url, config=Config()) as ledger:
        secret = ledger.create_token(token_name, "read", actor="bench").secret
    port_args = [sys.executable, str(Path(__file__).resolve()), "--serve", url, "--now",
                 health_bench.NOW.isoformat()]
    server = Server(port_args, workdir / f"large-{backend}-{n}.log")
    results = []
    try:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {secret}"},
                          timeout=TIMEOUT) as client:
            third = client.get("/api/v1/events", params={"limit": 50}).json()["next_cursor"]
            third = client.get("/api/v1/events", params={"cursor": third, "limit": 50}).json()["next_cursor"]
            for label, path, params in (
                ("GET /metrics", "/metrics", {}),
                ("GET /api/v1/events", "/api/v1/events", {}),
                ("GET /api/v1/events?state=FAILED", "/api/v1/events", {"state": "FAILED"}),
                ("GET /api/v1/events?cursor= (3rd page)", "/api/v1/events", {"cursor": third, "limit": 50}),
            ):
                for _ in range(3):  # warm-up
                    client.get(path, params=params).raise_for_status()
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    client.get(path, params=params).raise_for_status()
                    times.append(time.perf_counter() - started)
                results.append({"backend": backend, "events": n, "request": label, "requests": requests,
                                "p50_ms": 1000 * statistics.median(times),
                                "p95_ms": 1000 * percentile(times, 95),
                                "max_ms": 1000 * max(times)})
    finally:
        server.stop()
        if db is None:
            databases.drop(url)
        else:
            with Ledger(url, config=Config()) as ledger:
                ledger.revoke_token(token_name)
    return results


# -- main ------------------------------------------------------------------------------------------------
def main() -> int:
    if "--serve" in sys.argv:
        at = sys.argv.index("--serve")
        serve_child(sys.argv[at + 1], int(sys.argv[sys.argv.index("--port") + 1]),
                    sys.argv[sys.argv.index("--now") + 1])
        return 0
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=4000, help="detect+report operations per run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (threads)")
    parser.add_argument("--n", default="1000000,10000000", help="sizes of the large databases (part 2)")
    parser.add_argument("--requests", type=int, default=300, help="requests per kind (part 2)")
    parser.add_argument("--client", default="stdlib", choices=sorted(CLIENTS),
                        help="the HTTP clients' library (part 1): stdlib http.client (default) or httpx")
    parser.add_argument("--db", default=None,
                        help="part 2 on this PostgreSQL database, kept afterwards (made by big_ledger.py if "
                             "empty; one size only)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --db: use the database as it is when it holds at least --n events")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.set_defaults(backends="postgresql")
    args = parser.parse_args()
    chosen = backends(args)
    ops, k = args.ops, args.repeat or 3
    sizes = [int(s) for s in args.n.split(",") if s.strip()]
    requests = args.requests
    if args.smoke:
        ops, k, sizes, requests = 64, 1, [2000], 20
    if args.db is not None and (len(sizes) != 1 or chosen != ["postgresql"]):
        parser.error("--db takes one size (--n N) and the postgresql backend")
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="api_bench_"))
    out: dict[str, Any] = {"throughput": [], "latency": []}
    with Databases(args.pg) as databases:
        if not args.skip_throughput:
            for backend in chosen:
                out["throughput"].append(throughput(databases, backend, ops, args.clients, k, workdir,
                                                    args.client))
            print("## detect + report: HTTP (one serve process) vs in-process, "
                  f"{args.clients} concurrent clients ({args.client})\n")
            print(markdown_table(
                ["backend", "ops/run", "runs", "HTTP ops/s", "in-process ops/s", "HTTP / in-process",
                 "HTTP min-max s", "in-process min-max s"],
                [[r["backend"], r["ops"], r["runs"], f"{r['http']['per_s']:.0f}",
                  f"{r['in_process']['per_s']:.0f}", f"**{r['http_over_in_process']:.2f}**", r["http_spread"],
                  r["in_process_spread"]] for r in out["throughput"]]))
        if not args.skip_latency:
            for backend in chosen:
                for n in sizes:
                    out["latency"] += latency(databases, backend, n, requests, workdir, args.db, args.reuse)
            print(f"\n## Read latency on a large database ({requests} sequential requests each)\n")
            print(markdown_table(["backend", "events", "request", "p50 ms", "p95 ms", "max ms"],
                                 [[r["backend"], f"{r['events']:,}", r["request"], f"{r['p50_ms']:.1f}",
                                   f"**{r['p95_ms']:.1f}**", f"{r['max_ms']:.1f}"] for r in out["latency"]]))
    save_json(args.json, out)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "api_bench"
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
