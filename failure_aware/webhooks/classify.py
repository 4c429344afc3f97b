"""What a webhook answer means for the attempt (SPEC 12), as ``Succeeded`` or ``HandlerFailure``.

| answer | outcome |
|---|---|
| 2xx | succeeded |
| 3xx | failed, ``HTTP3xx`` (redirects are not followed: fix the URL) |
| 410 Gone | failed, ``HTTP410``, permanent: the event goes to DEAD at once |
| 429, 503 with ``Retry-After`` | failed, ``HTTP429``/``HTTP503``, ``retry_after`` = that value |
| any other status | failed, ``HTTP<status>`` |
| no answer | failed, ``Timeout``, ``ConnectError``, ``DNSError``, ``TLSError``, ``ConnectionReset``, ... |

Every outcome carries a ``detail``: the status, the duration, the endpoint (without credentials) and the
first 4 KiB of the response body. Pure: these functions see an answer or an exception, never the network.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx

from failure_aware.domain.outcomes import HandlerFailure, Succeeded

BODY_LIMIT_BYTES = 4096
# An attempt's detail is at most 16 KiB of JSON. 4 KiB of body is far below that as text, but a binary or
# control-character body escapes to up to 6 bytes per byte ("\u0000"): such a body is cut further, so the
# detail always fits and a 2xx is never turned into a refused detail.
BODY_JSON_LIMIT_BYTES = 12 * 1024
RETRY_AFTER_STATUSES = frozenset({429, 503})


def answer_outcome(
    status: int, headers: Mapping[str, str], body_head: bytes, *, duration_seconds: float,
    context: Mapping[str, Any] | None = None, body_truncated: bool = False,
) -> Succeeded:
    """The outcome of an HTTP answer: returns ``Succeeded`` for 2xx, raises ``HandlerFailure`` otherwise.

    ``headers`` are looked up case-insensitively (pass httpx's headers, or a dict with lower-case names);
    ``body_head`` is at most the first 4 KiB of the body (longer is cut here); ``context`` (the endpoint's
    URL without credentials, the webhook id) opens the detail.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    detail: dict[str, Any] = {
        **(context or {}),
        "status": status,
        "duration_seconds": round(duration_seconds, 6),
    }
    body, cut = body_text(body_head)
    detail["body"] = body
    if body_truncated or cut:
        detail["body_truncated"] = True
    if 200 <= status < 300:
        return Succeeded(detail=detail)
    error_type = f"HTTP{status}"
    reason = _reason(status)
    if 300 <= status < 400:
        location = _storable(lower.get("location", ""))
        detail["location"] = location[:2000]
        where = f" to {location[:200]}" if location else ""
        raise HandlerFailure(
            f"HTTP {status}{reason}: redirect{where} not followed (a webhook URL must answer itself; "
            "update it)",
            error_type=error_type, detail=detail,
        )
    if status == 410:
        raise HandlerFailure(
            f"HTTP 410{reason}: the receiver no longer wants these webhooks; not retried",
            error_type=error_type, permanent=True, detail=detail,
        )
    retry_after: float | datetime | None = None
    if status in RETRY_AFTER_STATUSES and "retry-after" in lower:
        detail["retry_after"] = _storable(lower["retry-after"][:200])
        retry_after = parse_retry_after(lower["retry-after"])
    message = f"HTTP {status}{reason}"
    if retry_after is not None:
        message += f" (Retry-After: {lower['retry-after'].strip()[:100]})"
    raise HandlerFailure(message, error_type=error_type, retry_after=retry_after, detail=detail)


def body_text(head: bytes) -> tuple[str, bool]:
    """The first 4 KiB of a body as text (invalid UTF-8 replaced), cut further while its JSON form is over
    12 KiB; and whether anything was cut."""
    text = _storable(head[:BODY_LIMIT_BYTES].decode("utf-8", errors="replace"))
    cut = len(head) > BODY_LIMIT_BYTES
    while len(json.dumps(text)) > BODY_JSON_LIMIT_BYTES:
        text, cut = text[: len(text) * 3 // 4], True
    return text, cut


def _storable(text: str) -> str:
    """Text from the receiver as the ledger can store it: NUL (refused in stored text) becomes U+FFFD, as it
    does in error messages (SPEC 3). Decoding with ``errors="replace"`` leaves no lone surrogates."""
    return text.replace("\x00", "\ufffd")


def parse_retry_after(value: str) -> float | datetime | None:
    """A ``Retry-After`` value as seconds (``"120"``) or an aware time (an HTTP date); None when it is
    neither (then the policy alone decides the next try). A date in the past means "now": 0 seconds."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text[:12]))  # twelve digits: far past any cap, and no huge integers
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def transport_failure(exc: httpx.HTTPError | httpx.InvalidURL, *, duration_seconds: float,
                      connect_timeout_seconds: float, timeout_seconds: float,
                      context: Mapping[str, Any] | None = None) -> HandlerFailure:
    """The failure for a request that got no answer: the error type names what went wrong."""
    detail: dict[str, Any] = {**(context or {}), "status": None,
                              "duration_seconds": round(duration_seconds, 6)}
    root = _root_cause(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        error_type, message = "Timeout", f"could not connect within {connect_timeout_seconds:g}s"
        detail["phase"] = "connect"
    elif isinstance(exc, httpx.TimeoutException):
        error_type, message = "Timeout", f"no answer within {timeout_seconds:g}s"
        detail["phase"] = "write" if isinstance(exc, httpx.WriteTimeout) else "read"
    elif isinstance(root, socket.gaierror):
        error_type, message = "DNSError", f"could not resolve the host: {root.strerror or root}"
    elif isinstance(root, ssl.SSLError):
        error_type, message = "TLSError", f"TLS handshake failed: {getattr(root, 'reason', None) or root}"
    elif isinstance(root, ConnectionRefusedError):
        error_type, message = "ConnectError", "connection refused (nothing listens at the endpoint's port)"
    elif isinstance(root, ConnectionResetError | BrokenPipeError):
        error_type, message = "ConnectionReset", "the receiver reset the connection before answering"
    elif isinstance(exc, httpx.RemoteProtocolError):
        error_type = "RemoteProtocolError"
        message = f"the receiver broke HTTP: {_first_line(exc) or 'closed the connection without an answer'}"
    elif isinstance(exc, httpx.ConnectError):
        error_type, message = "ConnectError", f"could not connect: {_first_line(root) or type(root).__name__}"
    else:
        error_type, message = type(exc).__name__, _first_line(exc) or type(exc).__name__
    return HandlerFailure(message, error_type=error_type, detail=detail)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the ``__cause__``/``__context__`` chain (httpx wraps httpcore wraps
    the OS error), bounded so a cyclic chain cannot loop."""
    current = exc
    for _ in range(10):
        inner = current.__cause__ or current.__context__
        if inner is None:
            break
        current = inner
    return current


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _reason(status: int) -> str:
    try:
        return f" {HTTPStatus(status).phrase}"
    except ValueError:
        return ""


__all__ = ["BODY_LIMIT_BYTES", "answer_outcome", "parse_retry_after", "transport_failure"]
