"""The classification of answers and transport errors (pure: no network), for what a test server cannot
easily produce here: DNS and TLS failures, odd ``Retry-After`` values."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

import httpx
import pytest

from failure_aware import HandlerFailure
from failure_aware.webhooks.classify import answer_outcome, parse_retry_after, transport_failure


def chained(outer: httpx.HTTPError, inner: BaseException) -> httpx.HTTPError:
    """``outer`` raised from ``inner``, as httpx raises its errors from httpcore's from the OS's."""
    try:
        try:
            raise inner
        except BaseException as cause:
            raise outer from cause
    except httpx.HTTPError as raised:
        return raised


def classify(exc: httpx.HTTPError) -> HandlerFailure:
    return transport_failure(exc, duration_seconds=0.01, connect_timeout_seconds=5, timeout_seconds=15,
                             context={"url": "https://hooks.example/in"})


@pytest.mark.parametrize(("exc", "error_type", "words"), [
    (chained(httpx.ConnectError("[Errno -2] Name or service not known"),
             socket.gaierror(-2, "Name or service not known")), "DNSError", "could not resolve"),
    (chained(httpx.ConnectError("certificate verify failed"),
             ssl.SSLCertVerificationError(1, "certificate verify failed")), "TLSError", "TLS handshake"),
    (chained(httpx.ConnectError("refused"), ConnectionRefusedError(111, "Connection refused")),
     "ConnectError", "connection refused"),
    (chained(httpx.ConnectError("unreachable"), OSError(101, "Network is unreachable")),
     "ConnectError", "could not connect"),
    (chained(httpx.ReadError("reset"), ConnectionResetError(104, "Connection reset by peer")),
     "ConnectionReset", "reset the connection"),
    (httpx.ConnectTimeout("timed out"), "Timeout", "could not connect within 5s"),
    (httpx.ReadTimeout("timed out"), "Timeout", "no answer within 15s"),
    (httpx.WriteTimeout("timed out"), "Timeout", "no answer within 15s"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "RemoteProtocolError",
     "Server disconnected"),
    (httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."),
     "UnsupportedProtocol", "missing"),
])
def test_transport_errors_are_named(exc: httpx.HTTPError, error_type: str, words: str) -> None:
    failure = classify(exc)
    assert failure.error_type == error_type and words in failure.message
    assert failure.detail is not None and failure.detail["status"] is None
    assert failure.detail["url"] == "https://hooks.example/in"
    assert not failure.permanent and failure.retry_after is None


def test_timeouts_say_which_phase() -> None:
    assert (classify(httpx.ConnectTimeout("x")).detail or {})["phase"] == "connect"
    assert (classify(httpx.ReadTimeout("x")).detail or {})["phase"] == "read"
    assert (classify(httpx.WriteTimeout("x")).detail or {})["phase"] == "write"


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 0 ", 0.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", datetime(2026, 10, 21, 7, 28, tzinfo=UTC)),
    ("Wed, 21 Oct 2026 07:28:00 -0000", datetime(2026, 10, 21, 7, 28, tzinfo=UTC)),
    ("Wed, 21 Oct 2026 09:28:00 +0200", datetime(2026, 10, 21, 7, 28, tzinfo=UTC)),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
    ("", None),
    ("9" * 40, float(int("9" * 12))),  # absurd: bounded here, capped by max_retry_after when recorded
])
def test_retry_after_values(value: str, expected: float | datetime | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_only_counts_on_429_and_503() -> None:
    with pytest.raises(HandlerFailure) as raised:
        answer_outcome(500, {"Retry-After": "120"}, b"", duration_seconds=0.1)
    assert raised.value.retry_after is None and raised.value.error_type == "HTTP500"
    with pytest.raises(HandlerFailure) as raised:
        answer_outcome(429, {}, b"slow down", duration_seconds=0.1)
    assert raised.value.retry_after is None and raised.value.error_type == "HTTP429"
    with pytest.raises(HandlerFailure) as raised:
        answer_outcome(503, {"retry-after": "whenever"}, b"", duration_seconds=0.1)
    assert raised.value.retry_after is None and (raised.value.detail or {})["retry_after"] == "whenever"


@pytest.mark.parametrize("status", [299, 200, 202])
def test_any_2xx_succeeds(status: int) -> None:
    outcome = answer_outcome(status, {}, b"\xff ok", duration_seconds=0.25, context={"webhook_id": "msg_1"})
    assert outcome.detail == {"webhook_id": "msg_1", "status": status, "duration_seconds": 0.25,
                              "body": "\ufffd ok"}


@pytest.mark.parametrize("status", [100, 302, 307, 308, 401, 418, 599])
def test_other_statuses_fail_with_their_number(status: int) -> None:
    with pytest.raises(HandlerFailure) as raised:
        answer_outcome(status, {"location": "https://new.example/"}, b"", duration_seconds=0.1)
    assert raised.value.error_type == f"HTTP{status}" and not raised.value.permanent
    if 300 <= status < 400:
        assert "not followed" in raised.value.message
        assert (raised.value.detail or {})["location"] == "https://new.example/"


@pytest.mark.parametrize("head", [b"\x00" * 4096, b"\xff" * 4096, "é".encode() * 2048, b"a" * 5000])
def test_the_body_in_the_detail_always_fits(head: bytes) -> None:
    import json

    outcome = answer_outcome(200, {}, head, duration_seconds=0.1, context={"url": "http://x/" + "p" * 990})
    size = len(json.dumps(outcome.detail))
    assert size <= 16 * 1024
    detail = outcome.detail or {}
    assert detail["body"] and detail["body_truncated"] is True  # measured as escaped ASCII JSON: worst case
