"""Standard Webhooks signatures: the specification's published test vector, and what ``verify`` refuses.

The vector (secret, message id, timestamp, payload, expected signature) is the one the specification's
reference libraries test against (standard-webhooks, libraries/python/tests: ``test_sign_function``).
"""

from __future__ import annotations

import base64
import os

import pytest

from failure_aware.domain.errors import FailureAwareError
from failure_aware.webhooks import WebhookVerificationError, decode_secret, sign, verify
from failure_aware.webhooks.signing import signature

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_WRONG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="  # the vector's "invalid signature" case


def vector_headers(sig: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP), "webhook-signature": sig}


def test_sign_matches_the_published_vector() -> None:
    key = decode_secret(VECTOR_SECRET)
    assert signature(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD) == VECTOR_SIGNATURE
    assert sign([key], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD) == vector_headers()


@pytest.mark.parametrize("secret", [VECTOR_SECRET, VECTOR_SECRET.removeprefix("whsec_"),
                                    decode_secret(VECTOR_SECRET)])
def test_verify_accepts_the_vector_with_or_without_the_prefix(secret: str | bytes) -> None:
    got = verify(secret, vector_headers(), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP + 10)
    assert got == VECTOR_ID
    assert verify(secret, vector_headers(), VECTOR_PAYLOAD.decode(), now=VECTOR_TIMESTAMP) == VECTOR_ID


def test_verify_finds_the_valid_signature_among_several() -> None:
    sigs = " ".join(["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                     "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", VECTOR_SIGNATURE, VECTOR_WRONG])
    assert verify(VECTOR_SECRET, vector_headers(sigs), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP) == VECTOR_ID


def test_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in vector_headers().items()}
    assert verify(VECTOR_SECRET, headers, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP) == VECTOR_ID


@pytest.mark.parametrize(("headers", "body", "needle"), [
    (vector_headers(VECTOR_WRONG), VECTOR_PAYLOAD, "no v1 signature matches"),
    (vector_headers(), b'{"test": 2432232315}', "no v1 signature matches"),  # tampered body
    (vector_headers(), VECTOR_PAYLOAD + b" ", "no v1 signature matches"),
    ({**vector_headers(), "webhook-id": "msg_other"}, VECTOR_PAYLOAD, "no v1 signature matches"),
    ({**vector_headers(), "webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}, VECTOR_PAYLOAD, "no v1"),
    (vector_headers("v1a," + VECTOR_SIGNATURE[3:]), VECTOR_PAYLOAD, "no v1 signature matches"),
    ({k: v for k, v in vector_headers().items() if k != "webhook-id"}, VECTOR_PAYLOAD, "webhook-id"),
    ({k: v for k, v in vector_headers().items() if k != "webhook-signature"}, VECTOR_PAYLOAD, "missing"),
    ({k: v for k, v in vector_headers().items() if k != "webhook-timestamp"}, VECTOR_PAYLOAD, "missing"),
    ({**vector_headers(), "webhook-timestamp": "hello"}, VECTOR_PAYLOAD, "whole Unix seconds"),
])
def test_verify_refuses(headers: dict[str, str], body: bytes, needle: str) -> None:
    with pytest.raises(WebhookVerificationError, match=needle) as refused:
        verify(VECTOR_SECRET, headers, body, now=VECTOR_TIMESTAMP)
    assert isinstance(refused.value, FailureAwareError)
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in str(refused.value)


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "future")])
def test_verify_refuses_a_timestamp_outside_the_tolerance(offset: int, word: str) -> None:
    # the receiver's clock is `offset` seconds away from the signed timestamp: 5 min + 1 s
    with pytest.raises(WebhookVerificationError, match=word):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP - offset)
    assert verify(VECTOR_SECRET, vector_headers(), VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP - offset,
                  tolerance_seconds=400) == VECTOR_ID


def test_verify_uses_the_real_clock_by_default() -> None:
    # the vector is from 2021: with today's clock it is a replay
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_PAYLOAD)


def test_signing_with_two_keys_lets_either_verify() -> None:
    old, new = os.urandom(32), os.urandom(32)
    headers = sign([old, new], "msg_1", 1700000000, b"{}")
    assert len(headers["webhook-signature"].split()) == 2
    for key in (old, new):
        assert verify(key, headers, b"{}", now=1700000000) == "msg_1"
    with pytest.raises(WebhookVerificationError):
        verify(os.urandom(32), headers, b"{}", now=1700000000)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "", "abc"])
def test_a_bad_secret_is_a_value_error_that_does_not_repeat_it(secret: str) -> None:
    with pytest.raises(ValueError) as bad:
        decode_secret(secret)
    assert secret.removeprefix("whsec_") not in str(bad.value) or not secret.removeprefix("whsec_")


def test_decode_secret_strips_the_prefix_and_decodes() -> None:
    raw = os.urandom(32)
    text = base64.b64encode(raw).decode()
    assert decode_secret("whsec_" + text) == raw == decode_secret(text) == decode_secret(f"  {text}\n")
