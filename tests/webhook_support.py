"""A scripted receiver for the webhook tests: the path says how to answer (``/status/429?retry_after=120``,
``/slow``, ``/reset``), and every request is verified by ``failure_aware.webhooks.verify``."""

from __future__ import annotations

import base64
import os
import socket
from urllib.parse import parse_qs, urlsplit

from failure_aware.webhooks import Endpoint, WebhookHandler
from failure_aware.webhooks.receiver import Answer, Received

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
SECRET_ENV = "FA_TEST_WEBHOOK_SECRET"
SLOW_SECONDS = 1.0  # the receiver's slow answer; the handler under test waits 0.3 s
BODY = b"x" * 5000  # longer than the 4 KiB kept in an attempt's detail


def respond(request: Received) -> Answer:
    """Answer as the request's path says."""
    parts = urlsplit(request.path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if parts.path == "/slow":
        return Answer(200, delay_seconds=SLOW_SECONDS)
    if parts.path == "/reset":
        return Answer(reset=True)
    if parts.path.startswith("/status/"):
        status = int(parts.path.removeprefix("/status/"))
        headers = {}
        if "retry_after" in query:
            headers["retry-after"] = query["retry_after"]
        if 300 <= status < 400:
            headers["location"] = "http://127.0.0.1:9/moved"
        body = BODY if query.get("big") else f"answer {status}".encode()
        if query.get("binary"):
            body = b"ok\x00\xff\xfe" * 1500
        return Answer(status, headers=headers, body=b"" if status == 204 else body)
    return Answer(404, body=b"no such path")


def handler_for(url: str, event_type: str = "payment.webhook", *, timeout: float = 0.3) -> WebhookHandler:
    """A handler with one endpoint, its secret given directly (not through os.environ)."""
    endpoint = Endpoint(event_type, url, SECRET_ENV, timeout_seconds=timeout, connect_timeout_seconds=0.3)
    return WebhookHandler({event_type: endpoint}, environ={SECRET_ENV: SECRET})


def refused_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
