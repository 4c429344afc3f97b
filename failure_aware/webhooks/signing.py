"""Standard Webhooks signatures: the sender's ``sign`` and the receiver's ``verify`` (pure, no I/O).

The scheme (Standard Webhooks 1.0, symmetric): the signed content is
``{webhook-id}.{webhook-timestamp}.{body}``, the signature is ``v1,`` + base64 of its HMAC-SHA256 under the
secret, and ``webhook-signature`` carries one or more such signatures separated by spaces (so a secret can
be rotated without downtime: sign with the old and the new one for a while). A secret is written
``whsec_`` + base64 of its bytes; the prefix is optional.

``verify`` is what a receiver calls on each request: it refuses a missing header, a timestamp outside the
tolerance (replays), and a body or header that does not match any ``v1`` signature, comparing in constant
time. It raises ``WebhookVerificationError`` and never puts the secret in a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Protocol

from failure_aware.domain.errors import FailureAwareError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300  # the specification's usual 5 minutes either side of the receiver's clock
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class WebhookVerificationError(FailureAwareError):
    """A webhook request failed verification: a header is missing or malformed, the timestamp is outside
    the tolerance, or no signature matches the body. The receiver should answer 400 or 401 and drop it."""


class Headers(Protocol):
    """Anything with ``items()`` of header names and values: a dict, ``http.server``'s message, httpx's."""

    def items(self) -> Iterable[tuple[str, str]]: ...  # pragma: no cover - a protocol


def decode_secret(secret: str | bytes) -> bytes:
    """The key bytes of a secret: ``bytes`` as they are; a string with its ``whsec_`` prefix (if any)
    removed and base64-decoded. Raises ``ValueError`` (without the secret in it) when it is not base64."""
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    else:
        text = secret.strip()
        text = text.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the secret is not valid base64 (after an optional whsec_ prefix)") from None
    if not key:
        raise ValueError("the secret is empty")
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature of ``webhook_id.timestamp.body`` under ``key``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(keys: Iterable[bytes], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request, signed with every key (rotation: old and new)."""
    signatures = " ".join(signature(key, webhook_id, timestamp, body) for key in keys)
    if not signatures:
        raise ValueError("at least one key is needed to sign")
    return {HEADER_ID: webhook_id, HEADER_TIMESTAMP: str(timestamp), HEADER_SIGNATURE: signatures}


def verify(
    secret: str | bytes,
    headers: Headers,
    body: bytes | str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a received webhook; return its ``webhook-id`` (the receiver's idempotency key).

    ``secret`` is the endpoint's secret (``whsec_...`` or plain base64, or the key bytes); ``headers`` the
    request's headers (names in any case); ``body`` the raw body exactly as received (verify before parsing
    JSON: re-serialized JSON rarely matches). ``now`` (Unix seconds) is for tests.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is more than
            ``tolerance_seconds`` away from now (a replay, or a clock far off), or no ``v1`` signature in
            ``webhook-signature`` matches.
        ValueError: ``secret`` itself is not a valid secret (a mistake of the receiver, not of the request).
    """
    key = decode_secret(secret)
    found = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not found.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    webhook_id, stamp, signatures = found[HEADER_ID], found[HEADER_TIMESTAMP].strip(), found[HEADER_SIGNATURE]
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError(f"{HEADER_TIMESTAMP} must be whole Unix seconds, got {stamp[:40]!r}")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        direction = "old" if timestamp < current else "far in the future"
        raise WebhookVerificationError(
            f"{HEADER_TIMESTAMP} {timestamp} is too {direction}: more than {tolerance_seconds:g}s from now "
            f"({int(current)}); refused as a possible replay"
        )
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = signature(key, webhook_id, timestamp, raw).encode()
    for candidate in signatures.split():
        version, _, _value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(candidate.encode(), expected):
            return webhook_id
    raise WebhookVerificationError("no v1 signature matches the body (tampered body, or the wrong secret)")


__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "Headers",
    "WebhookVerificationError",
    "decode_secret",
    "sign",
    "signature",
    "verify",
]
