"""The webhook handler: POST an event's payload to its type's endpoint, signed, and say what came of it.

``deliver`` (a ``WebhookHandler``) is what ``--handler failure_aware.webhooks:deliver`` loads for ``run``,
``retry --due`` and ``worker``. The CLI hands it the configuration first (``configure``), which reads and
checks every endpoint's secret before anything is claimed; used from Python without that, it loads
``failure-aware.toml`` from the working directory on its first call, like ``Ledger()`` does.

One connection pool per process: the handler holds one ``httpx.Client`` (thread-safe, so a worker's
concurrent loops share it and reuse connections), made on first use and made again in a forked child.
Redirects are not followed, cookies are never kept between requests, proxies from the environment
(``HTTPS_PROXY``, ``NO_PROXY``) are honoured. httpx is imported on first delivery, not with the package,
so commands that never deliver do not pay for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.outcomes import HandlerFailure, Succeeded
from failure_aware.domain.records import Event
from failure_aware.webhooks.settings import Endpoint
from failure_aware.webhooks.signing import sign

if TYPE_CHECKING:
    import httpx

    from failure_aware.config import Config

MAX_CONNECTIONS = 128  # a worker runs at most 64 loops; each holds one connection at a time
MAX_KEEPALIVE_CONNECTIONS = 64


def webhook_id(event: Event) -> str:
    """The ``webhook-id`` of an event: ``msg_`` + 32 hex digits of SHA-256 over its type and key.

    Derived from (event type, key) rather than the database id: that pair is the event's identity (``detect``
    of a known pair returns the same event), it survives export and import into another database, and the
    receiver uses ``webhook-id`` as its idempotency key, so the same event must keep the same id wherever
    it is delivered from. Hashing keeps user-chosen text (which may hold ``.``, forbidden by the signature
    scheme) out of the signed content.
    """
    digest = hashlib.sha256(f"{event.event_type}\n{event.key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def request_body(event: Event) -> bytes:
    """The body sent: the event's payload as compact JSON (UTF-8), the same bytes on every attempt."""
    return json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Delivery:
    """One request, ready to send: where, the headers (signed for ``timestamp``) and the body."""

    endpoint: Endpoint
    headers: dict[str, str]
    body: bytes


class WebhookHandler:
    """Delivers events by HTTP POST per SPEC 12; call it with an event (a handler for ``Ledger.run``).

    ``endpoints`` maps event types to ``Endpoint``s (None: take them from the configuration, see
    ``configure``); ``environ`` is where secrets are read (default ``os.environ``); ``clock`` gives the
    ``webhook-timestamp`` (Unix seconds). Returns ``Succeeded`` or raises ``HandlerFailure``, never other
    exceptions for anything the network or the receiver does.
    """

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._environ = environ
        self._clock = clock
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] | None = None
        self._keys: dict[str, tuple[bytes, ...]] = {}
        self._client: httpx.Client | None = None
        self._client_pid = 0
        self._user_agent = ""
        if endpoints is not None:
            self._use(endpoints)

    def __repr__(self) -> str:  # never the keys
        types = "unconfigured" if self._endpoints is None else ", ".join(sorted(self._endpoints)) or "none"
        return f"<WebhookHandler endpoints: {types}>"

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, config: Config) -> None:
        """Use the ``[webhooks]`` endpoints of ``config`` and read every secret now.

        Raises:
            ValidationError: no endpoint is configured, or a secret is missing or malformed (named, never
                shown), so a command fails before it claims anything.
        """
        if not config.webhooks:
            where = f" in {config.source}" if config.source else " (no configuration file found)"
            raise ValidationError(
                f'no webhook endpoints configured{where}: add [webhooks."EVENT_TYPE"] with url and '
                "secret_env (see docs/webhooks.md)"
            )
        self._use(config.webhooks)

    def _use(self, endpoints: Mapping[str, Endpoint]) -> None:
        keys = {event_type: endpoint.read_keys(self._environ) for event_type, endpoint in endpoints.items()}
        with self._lock:
            self._endpoints = dict(endpoints)
            self._keys = keys

    def endpoint_for(self, event_type: str) -> Endpoint:
        """The endpoint of ``event_type``; unconfigured, the handler first loads ``failure-aware.toml`` from
        the working directory. Raises ``ValidationError`` when there is none (or no usable config)."""
        if self._endpoints is None:
            from failure_aware.config import load_config

            with self._lock:
                loaded = self._endpoints is not None
            if not loaded:
                self.configure(load_config())
        assert self._endpoints is not None
        endpoint = self._endpoints.get(event_type)
        if endpoint is None:
            raise ValidationError(
                f'no [webhooks."{event_type}"] endpoint in the configuration (configured: '
                f"{', '.join(sorted(self._endpoints)) or 'none'})"
            )
        return endpoint

    def _endpoint(self, event_type: str) -> tuple[Endpoint, tuple[bytes, ...]]:
        """The endpoint and keys for a delivery; a configuration problem is this attempt's failure
        (``WebhookConfigError``), recorded like any other, since the handler runs inside a claim."""
        try:
            endpoint = self.endpoint_for(event_type)
        except ValidationError as exc:
            raise HandlerFailure(str(exc), error_type="WebhookConfigError") from None
        with self._lock:
            keys = self._keys.get(event_type)
        if keys is None:  # reconfigured meanwhile, without this type
            raise HandlerFailure(f'no [webhooks."{event_type}"] endpoint any more',
                                 error_type="WebhookConfigError")
        return endpoint, keys

    # -- delivery -----------------------------------------------------------------------------------
    def prepare(self, event: Event) -> Delivery:
        """The request for ``event`` as it would be sent now (signed with the current time)."""
        endpoint, keys = self._endpoint(event.event_type)
        body = request_body(event)
        headers = sign(keys, webhook_id(event), int(self._clock()), body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = self._agent()
        headers["accept-encoding"] = "identity"  # the body head is kept as sent: no decompression
        return Delivery(endpoint, headers, body)

    def __call__(self, event: Event) -> Succeeded:
        """Deliver ``event``: ``Succeeded`` on 2xx, else ``HandlerFailure`` (see ``classify``)."""
        return self.send(self.prepare(event))

    def send(self, delivery: Delivery) -> Succeeded:
        """Send a prepared request and classify what came back."""
        import httpx

        from failure_aware.webhooks.classify import BODY_LIMIT_BYTES, answer_outcome, transport_failure

        endpoint = delivery.endpoint
        timeout = httpx.Timeout(endpoint.timeout_seconds, connect=endpoint.connect_timeout_seconds)
        deadline_seconds = endpoint.connect_timeout_seconds + endpoint.timeout_seconds
        context = {"url": endpoint.shown_url, "webhook_id": delivery.headers["webhook-id"]}
        client = self.client()  # made once per process, outside the attempt's measured time
        started = time.monotonic()
        try:
            with client.stream(
                "POST", endpoint.url, content=delivery.body, headers=delivery.headers, timeout=timeout
            ) as response:
                head, truncated = _read_head(response, BODY_LIMIT_BYTES, started + deadline_seconds)
                status, headers = response.status_code, response.headers
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_failure(
                exc, duration_seconds=time.monotonic() - started, context=context,
                connect_timeout_seconds=endpoint.connect_timeout_seconds,
                timeout_seconds=endpoint.timeout_seconds,
            ) from None
        return answer_outcome(status, headers, head, duration_seconds=time.monotonic() - started,
                              context=context, body_truncated=truncated)

    def client(self) -> httpx.Client:
        """This process's client (its connection pool), made on first use and again after a fork."""
        import httpx

        pid = os.getpid()
        with self._lock:
            if self._client is None or self._client_pid != pid:
                self._client = httpx.Client(
                    follow_redirects=False,
                    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),  # keep none
                    limits=httpx.Limits(max_connections=MAX_CONNECTIONS,
                                        max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS),
                )
                self._client_pid = pid
            return self._client

    def close(self) -> None:
        """Close this process's connections (a later delivery opens new ones)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._client_pid == os.getpid():
            client.close()

    def _agent(self) -> str:
        if not self._user_agent:
            from importlib.metadata import PackageNotFoundError, version

            try:
                self._user_agent = f"failure-aware/{version('failure-aware')}"
            except PackageNotFoundError:
                self._user_agent = "failure-aware"
        return self._user_agent


def _read_head(response: httpx.Response, limit: int, deadline: float) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body; stops early at ``deadline`` (monotonic). Returns the bytes and
    whether the body went on past them. A short body is read to its end, so the connection is reused."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or time.monotonic() > deadline:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


__all__ = ["Delivery", "WebhookHandler", "request_body", "webhook_id"]
