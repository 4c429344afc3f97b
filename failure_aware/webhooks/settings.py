"""Where each event type's webhooks go: the ``[webhooks."TYPE"]`` tables of the configuration (SPEC 12).

::

    [webhooks."payment.webhook"]
    url = "https://example.com/hooks/payments"
    secret_env = "PAYMENT_WEBHOOK_SECRET"   # the environment variable holding whsec_...
    timeout = "15s"                          # optional: the longest wait for the answer (default 15 s)
    connect_timeout = "5s"                   # optional: the longest wait to connect (default 5 s)

Loading the configuration checks these values but does not read the secrets: commands that never deliver
(``events``, ``health``) must not need them. The secret is read from the environment by the webhook handler
when it is prepared (``WebhookHandler.configure``), and is held only in that process's memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from failure_aware.domain import validation
from failure_aware.domain.durations import parse_duration
from failure_aware.domain.errors import ValidationError
from failure_aware.webhooks.signing import decode_secret

DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 300.0  # an attempt must end well within its claim's lease (5 min by default)
MIN_SECRET_BYTES = 24  # the Standard Webhooks specification: "at least 24 bytes (192 bits)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = ("url", "secret_env", "timeout", "connect_timeout")


@dataclass(frozen=True)
class Endpoint:
    """One event type's receiver: where to POST, which environment variable holds the secret, how long to
    wait. Holds no secret itself, so it can be printed and compared freely."""

    event_type: str
    url: str
    secret_env: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        validation.event_type(self.event_type)
        _check_url(self.url)
        if not isinstance(self.secret_env, str) or not _ENV_NAME.fullmatch(self.secret_env):
            raise ValidationError(
                f"secret_env must name an environment variable (letters, digits, _), got {self.secret_env!r}"
            )
        timeouts = (("timeout", self.timeout_seconds), ("connect_timeout", self.connect_timeout_seconds))
        for name, value in timeouts:
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 < value <= MAX_TIMEOUT_SECONDS
            ):
                raise ValidationError(
                    f"{name} must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g}s, got {value!r}"
                )

    @property
    def shown_url(self) -> str:
        """The URL without user, password or query: what may appear in an attempt's detail and output
        (credentials sometimes ride in a URL; they never go into the database)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        shown = f"{parts.scheme}://{host}{port}{parts.path or '/'}"
        return shown if len(shown) <= 1000 else shown[:997] + "..."

    def read_keys(self, environ: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
        """The signing keys from the environment variable ``secret_env`` (several, space-separated, while a
        secret is rotated: each request is then signed with each).

        Raises:
            ValidationError: the variable is unset or empty, or a secret in it is not ``whsec_`` + base64 of
                at least 24 bytes. The message names the variable, never its value.
        """
        env = os.environ if environ is None else environ
        raw = env.get(self.secret_env, "")
        where = f'webhooks."{self.event_type}": environment variable {self.secret_env}'
        if not raw.strip():
            raise ValidationError(f"{where} is not set (it must hold the endpoint's secret, whsec_...)")
        keys = []
        for number, text in enumerate(raw.split(), 1):
            try:
                key = decode_secret(text)
            except ValueError as exc:
                raise ValidationError(f"{where}: secret {number}: {exc}") from None
            if len(key) < MIN_SECRET_BYTES:
                raise ValidationError(
                    f"{where}: secret {number} is {len(key)} bytes; the Standard Webhooks specification asks "
                    f"for at least {MIN_SECRET_BYTES} (make one: see docs/webhooks.md)"
                )
            keys.append(key)
        return tuple(keys)


def endpoints_from_table(table: Any, where: str = "webhooks") -> dict[str, Endpoint]:
    """Parse the ``[webhooks]`` table: one sub-table per event type. Raises ``ValidationError`` naming the
    key that is wrong."""
    if not isinstance(table, Mapping):
        raise ValidationError(f"{where} must be a table of event types, got {table!r}")
    endpoints: dict[str, Endpoint] = {}
    for event_type, entry in table.items():
        name = f'{where}."{event_type}"'
        if not isinstance(entry, Mapping):
            raise ValidationError(f"{name} must be a table (url, secret_env, ...), got {entry!r}")
        unknown = [key for key in entry if key not in _KEYS]
        if unknown:
            raise ValidationError(f"{name}.{unknown[0]}: unknown key (known: {', '.join(_KEYS)})")
        for required in ("url", "secret_env"):
            if required not in entry:
                raise ValidationError(f"{name}: {required} is required")
        try:
            endpoints[event_type] = Endpoint(
                event_type=event_type,
                url=entry["url"],
                secret_env=entry["secret_env"],
                timeout_seconds=_seconds(entry, "timeout", DEFAULT_TIMEOUT_SECONDS),
                connect_timeout_seconds=_seconds(entry, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS),
            )
        except ValidationError as exc:
            raise ValidationError(f"{name}: {exc}") from None
    return endpoints


def _seconds(entry: Mapping[str, Any], key: str, default: float) -> float:
    if key not in entry:
        return default
    try:
        return parse_duration(entry[key])
    except ValidationError as exc:
        raise ValidationError(f"{key}: {exc}") from None


def _check_url(url: object) -> None:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError(f"url must be an http:// or https:// URL, got {url!r}")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValidationError(f"url {_shorten(url)!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"url must be an http:// or https:// URL with a host, got {_shorten(url)!r}")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationError(f"url {_shorten(url)!r} contains whitespace or control characters")


def _shorten(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "Endpoint",
    "endpoints_from_table",
]
