"""A small webhook receiver on 127.0.0.1, for the demo, the tests and the benchmark (and as an example).

``LocalReceiver(secret, respond)`` serves HTTP on an ephemeral port of 127.0.0.1 in threads of this
process, until ``close()`` (or the end of a ``with`` block): it is owned by the code that starts it, never
left running. Every request is checked with ``verify`` first (a request that fails it is answered 401 and
recorded as refused, the way a real receiver should behave); a verified one is answered as
``respond(request)`` says: a status, headers and a body, after an optional delay, or a reset connection.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from failure_aware.webhooks.signing import WebhookVerificationError, verify

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_DELAY_SECONDS = 30.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it: path, headers (lower-case names), body, and whether it verified."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str | None = None  # why verification failed

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header ("" when missing)."""
        return self.headers.get("webhook-id", "")


@dataclass(frozen=True)
class Answer:
    """What to answer: ``status``, ``headers``, ``body``, after ``delay_seconds``; or, with ``reset``, no
    answer at all (the connection is reset)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_seconds: float = 0.0
    reset: bool = False


def always_ok(_request: Received) -> Answer:
    """Answer 200 with a short body: a receiver that accepts everything at once."""
    return Answer(200, body=b"ok")


class LocalReceiver:
    """An HTTP receiver on 127.0.0.1 (ephemeral port) that verifies signatures; see the module docstring.

    ``secret`` is the endpoint's secret (``whsec_...``); ``respond`` decides each answer; ``keep`` (default
    True) keeps every request in ``requests`` (turn it off for long benchmark runs).
    """

    def __init__(self, secret: str | bytes, respond: Callable[[Received], Answer] = always_ok, *,
                 keep: bool = True) -> None:
        self.secret = secret
        self.respond = respond
        self.keep = keep
        self.requests: list[Received] = []
        self.refused = 0
        self.count = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="failure-aware-receiver", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT`` + ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def record(self, request: Received) -> None:
        """Count (and keep) one request; called from the server's threads."""
        with self._lock:
            self.count += 1
            self.refused += not request.verified
            if self.keep:
                self.requests.append(request)

    def close(self) -> None:
        """Stop serving and close the socket (requests still sleeping in a delay are not waited for)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalReceiver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a request sleeping in a delay must not hold up close()
    request_queue_size = 128
    receiver: LocalReceiver

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet when the sender went away first (it timed out on a slow answer); else the default report."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("content-length") or 0)
        if not 0 <= length <= MAX_BODY_BYTES:
            self._answer(Answer(413, body=b"body too large"))
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            verify(receiver.secret, self.headers, body)
        except WebhookVerificationError as exc:
            receiver.record(Received(self.path, headers, body, verified=False, problem=str(exc)))
            self._answer(Answer(401, body=f"refused: {exc}".encode()))
            return
        request = Received(self.path, headers, body, verified=True)
        receiver.record(request)
        self._answer(receiver.respond(request))

    def _answer(self, answer: Answer) -> None:
        if answer.delay_seconds > 0:
            time.sleep(min(answer.delay_seconds, MAX_DELAY_SECONDS))
        if answer.reset:  # SO_LINGER 0: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the receiver's callers print what matters."""


__all__ = ["Answer", "LocalReceiver", "Received", "always_ok"]
