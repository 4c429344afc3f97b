"""Running the server: the address rule, the one-off login token, uvicorn, and logs that hold no secret.

On a loopback address with no token in the database, ``serve`` makes an ``admin`` token that lives only in
this process and prints it once with a login URL; on any other address it refuses to start without
tokens (an API open to the network with no token would be open to everyone). Serving handles requests
and nothing else: nothing is scheduled, retried or recomputed in the background.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any

from failure_aware.domain.errors import ValidationError
from failure_aware.ledger import Ledger
from failure_aware.server.auth import LoginToken

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_SECRET_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"]*", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, or ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RedactSecrets(logging.Filter):
    """Blank the value of any ``token=`` query parameter in a log record (the access log prints paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments and message; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    return _SECRET_IN_QUERY.sub(r"\1***", text)


def prepare(ledger: Ledger, host: str) -> tuple[LoginToken | None, str | None]:
    """The login token to use (and its secret, to print once), or a refusal (``ValidationError``)."""
    if ledger.has_tokens():
        return None, None
    if not is_loopback(host):
        raise ValidationError(
            f"refusing to serve on {host} without API tokens: anyone who reaches it could use it. Make one "
            "first (failure-aware token create NAME --scope read), or serve on 127.0.0.1"
        )
    login, secret = LoginToken.make()
    return login, secret


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with ``RedactSecrets`` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG}
    config["filters"] = {"redact": {"()": RedactSecrets}}
    config["handlers"] = {
        name: {**handler, "filters": ["redact"]} for name, handler in LOGGING_CONFIG["handlers"].items()
    }
    return config


def run(
    ledger: Ledger,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    public_metrics: bool = False,
    max_body_bytes: int | None = None,
    token_cache_seconds: float = 5.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``ledger`` in the foreground until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn

    from failure_aware.server.app import create_app

    login, secret = prepare(ledger, host)
    app = create_app(ledger, public_metrics=public_metrics, login=login, max_body_bytes=max_body_bytes,
                     token_cache_seconds=token_cache_seconds)
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"failure-aware serving {ledger.url} on http://{shown}:{port} "
        f"(API /api/v1, OpenAPI /api/v1/openapi.json, metrics /metrics)"
    )
    if secret is not None:
        announce("no API token exists: made a one-off admin token for this process only")
        announce(f"  login: http://{shown}:{port}/login?token={secret}")
        announce(f"  API:   Authorization: Bearer {secret}")
    uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=log_config(), server_header=False)
    ).run()
