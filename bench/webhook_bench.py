"""Webhook delivery (issue 14): deliveries per second of one worker (concurrency 16) vs a bare httpx loop.

Usage (from the repository root)::

    python bench/webhook_bench.py [--n 3000] [-k 3] [--backends sqlite,postgresql] [--concurrency 16]
                                  [--pg ADMIN_URL] [--smoke] [--json OUT]

The receiver answers at once: a minimal asyncio HTTP/1.1 responder (keep-alive, ``200`` with a two-byte body,
no signature check) in its own process, so it shares no GIL with the sender being measured. It listens on
127.0.0.1 only and is stopped at the end of the run.

- ours: ``n`` PENDING events of one type (imported untimed into a fresh database per run), then one
  ``Worker(ledger, failure_aware.webhooks.WebhookHandler(...), concurrency=16).run(once=True)``: claims in
  batches, the handler builds and signs each request (Standard Webhooks headers) and POSTs it through the
  process's one httpx client, classifies the answer, and the outcomes are recorded (group commit). The
  clock runs from the start of ``run`` until every event is SUCCEEDED (checked).
- bare httpx: 16 threads share one ``httpx.Client`` and POST the same ``n`` bodies with the same headers,
  built and signed before the clock starts; nothing is recorded. That is the ceiling of the HTTP part alone.

Both sides run interleaved (ours, bare, ours, bare ...) in the same process run; reported: deliveries per
second at the median of ``k`` runs, and ours/bare (target: at least 0.5).
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Databases, Series, backends, base_parser, interleave, markdown_table, write_json

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.domain.records import Event
from failure_aware.domain.timeutil import format_time
from failure_aware.webhooks import Endpoint, WebhookHandler, request_body, sign, webhook_id
from failure_aware.webhooks.signing import decode_secret

EVENT_TYPE = "bench.webhook"
SECRET_ENV = "FA_BENCH_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PAYLOAD = {"invoice": "inv_1000", "amount": 1234, "currency": "EUR", "customer": "cus_42"}
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
RECEIVER_LIFETIME_S = 1800  # the receiver process stops itself after this, whatever happens to us


# -- the receiver (its own process) ------------------------------------------------------------------------
def serve(port_out: Any, stop: Any) -> None:
    """Answer every request on 127.0.0.1 with 200 at once, until ``stop`` is set (or the lifetime ends)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass  # the sender closed the connection, or the receiver is stopping
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        port_out.put(server.sockets[0].getsockname()[1])
        async with server:
            for _ in range(int(RECEIVER_LIFETIME_S / 0.1)):
                if stop.is_set():
                    return
                await asyncio.sleep(0.1)

    asyncio.run(main())


# -- the two sides -----------------------------------------------------------------------------------------
def seed(url: str, n: int) -> None:
    """``n`` PENDING events, detected a minute ago (due now)."""
    detected = format_time(datetime.now(UTC) - timedelta(minutes=1))
    with Ledger(url, config=Config()) as ledger:
        ledger.import_events({"event_type": EVENT_TYPE, "key": f"evt-{i}", "detected_at": detected,
                              "payload": PAYLOAD} for i in range(n))


def ours(dbs: Databases, backend: str, endpoint_url: str, n: int, concurrency: int,
         handler: WebhookHandler) -> Callable[[], Callable[[], object]]:
    """Prepare a fresh seeded database; the step runs one worker over it, checks all got through."""
    from failure_aware.worker import Worker

    def prepare() -> Callable[[], object]:
        url = dbs.new(backend, "webhook")
        seed(url, n)
        ledger = Ledger(url, config=Config())
        ledger.due(limit=1)  # connect before the clock starts

        def step() -> None:
            summary = Worker(ledger, handler, concurrency=concurrency).run(once=True)
            succeeded = ledger.state_counts(event_type=EVENT_TYPE).get(State.SUCCEEDED, 0)
            # why a delivery failed (a run at load 11 once lost one, its cause unknown): the first few errors
            errors = [f"{a.error_type}: {a.error}" for e in ledger.events(state=State.FAILED, limit=3)
                      for a in ledger.show(e.id).attempts[-1:]] if succeeded != n else []
            ledger.close()
            dbs.drop(url)
            if summary.succeeded != n or succeeded != n:
                raise SystemExit(f"ours: {summary.succeeded} of {n} delivered ({summary.as_dict()}); "
                                 f"failed: {errors}")

        return step

    return prepare


def bare(endpoint_url: str, n: int, concurrency: int, client: Any) -> Callable[[], Callable[[], object]]:
    """Prepare ``n`` signed requests; the step POSTs them from ``concurrency`` threads over one client."""
    key = decode_secret(SECRET)

    def prepare() -> Callable[[], object]:
        now = int(datetime.now(UTC).timestamp())
        requests = []
        for i in range(n):
            event = Event(i + 1, EVENT_TYPE, f"evt-{i}", PAYLOAD, datetime.now(UTC), State.PENDING)
            body = request_body(event)
            headers = sign([key], webhook_id(event), now, body)
            headers["content-type"] = "application/json"
            requests.append((body, headers))

        def step() -> None:
            position = iter(range(n))
            lock = threading.Lock()
            failures: list[int] = []

            def loop() -> None:
                while True:
                    with lock:
                        i = next(position, None)
                    if i is None:
                        return
                    body, headers = requests[i]
                    status = client.post(endpoint_url, content=body, headers=headers).status_code
                    if status != 200:
                        failures.append(status)

            threads = [threading.Thread(target=loop) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise SystemExit(f"bare: {len(failures)} of {n} posts failed")

        return step

    return prepare


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="deliveries per run")
    parser.add_argument("--concurrency", type=int, default=16, help="threads of the worker and of the loop")
    args = parser.parse_args()
    n = 200 if args.smoke else args.n
    k = 1 if args.smoke else (args.repeat or 3)
    chosen = ["sqlite"] if args.smoke else backends(args)
    ctx = mp.get_context("spawn")
    port_queue, stop = ctx.Queue(), ctx.Event()
    receiver = ctx.Process(target=serve, args=(port_queue, stop), daemon=True)
    receiver.start()
    import httpx

    try:
        port = port_queue.get(timeout=60)
        endpoint_url = f"http://127.0.0.1:{port}/hooks"
        endpoint = Endpoint(EVENT_TYPE, endpoint_url, SECRET_ENV)
        handler = WebhookHandler({EVENT_TYPE: endpoint}, environ={SECRET_ENV: SECRET})
        client = httpx.Client(limits=httpx.Limits(max_connections=128, max_keepalive_connections=64))
        series: dict[str, Series] = {}
        sides = []
        with Databases(args.pg) as dbs:
            for backend in chosen:
                series[backend] = Series(f"ours ({backend})", n)
                prepare = ours(dbs, backend, endpoint_url, n, args.concurrency, handler)
                sides.append((series[backend], prepare))
            series["bare"] = Series("bare httpx loop", n)
            sides.append((series["bare"], bare(endpoint_url, n, args.concurrency, client)))
            interleave(1, sides)  # warm-up round (connections, caches), not reported
            for s in series.values():
                s.times.clear()
                s.cpu_times.clear()
            interleave(k, sides)
        client.close()
        handler.close()
    finally:
        stop.set()
        receiver.join(timeout=10)
        if receiver.is_alive():
            receiver.terminate()
    base = series["bare"]
    rows = [(s.name, n, args.concurrency, s.rate, s.spread(),
             "1.00" if s is base else f"{base.median / s.median:.2f}") for s in series.values()]
    print(f"Webhook delivery, {n} deliveries per run, median of {k} interleaved run(s) after one warm-up; "
          "receiver: an asyncio responder in its own process on 127.0.0.1 answering 200 at once.\n")
    headers = ["side", "deliveries", "concurrency", "per second", "run times (s)", "of bare"]
    print(markdown_table(headers, rows))
    write_json(args.json, {"bench": "webhook", "n": n, "k": k, "concurrency": args.concurrency,
                           "series": [s.as_dict() for s in series.values()]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
