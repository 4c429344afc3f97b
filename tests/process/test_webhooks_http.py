"""Webhook delivery against a real HTTP server on 127.0.0.1 (SPEC 12): every answer gives its outcome.

Two layers: the handler's classification (the ``Succeeded`` / ``HandlerFailure`` it gives for each answer,
no database), and the same answers end to end through ``Ledger.run`` on both backends (state,
``next_retry_at``, error type, detail). The receiver verifies every request's signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import FakeClock
from webhook_support import SECRET, handler_for, refused_port, respond

from failure_aware import HandlerFailure, Ledger, State, Succeeded
from failure_aware.domain.records import Event
from failure_aware.webhooks import request_body, sign, webhook_id
from failure_aware.webhooks.receiver import LocalReceiver
from failure_aware.webhooks.signing import decode_secret


@pytest.fixture(scope="module")
def receiver() -> Iterator[LocalReceiver]:
    with LocalReceiver(SECRET, respond) as started:
        yield started


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # on the receiver; "REFUSED" for a port nothing listens on
    error_type: str | None  # None: succeeded
    permanent: bool = False
    retry_after: str | None = None  # "120" seconds, or "date": an HTTP date 5 minutes ahead
    status: int | None = None


CASES = [
    Case("200", "/status/200", None, status=200),
    Case("201", "/status/201", None, status=201),
    Case("204", "/status/204", None, status=204),
    Case("301", "/status/301", "HTTP301", status=301),
    Case("400", "/status/400", "HTTP400", status=400),
    Case("404", "/status/404", "HTTP404", status=404),
    Case("410", "/status/410", "HTTP410", permanent=True, status=410),
    Case("429 seconds", "/status/429?retry_after=120", "HTTP429", retry_after="120", status=429),
    Case("429 date", "/status/429?retry_after=DATE", "HTTP429", retry_after="date", status=429),
    Case("503 seconds", "/status/503?retry_after=120", "HTTP503", retry_after="120", status=503),
    Case("503 without", "/status/503", "HTTP503", status=503),
    Case("500", "/status/500", "HTTP500", status=500),
    Case("slow", "/slow", "Timeout"),
    Case("reset", "/reset", "ConnectionReset"),
    Case("refused", "REFUSED", "ConnectError"),
]


def url_of(case: Case, receiver: LocalReceiver, now: datetime) -> str:
    if case.path == "REFUSED":
        return f"http://127.0.0.1:{refused_port()}/"
    return receiver.url(case.path.replace("DATE", quote(http_date(now + timedelta(minutes=5)))))


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def an_event(key: str = "evt_1") -> Event:
    return Event(1, "payment.webhook", key, {"amount": 12, "note": "é"}, datetime.now(UTC), State.PENDING)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_answer_is_classified(case: Case, receiver: LocalReceiver) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    handler = handler_for(url_of(case, receiver, now))
    before = receiver.refused
    if case.error_type is None:
        outcome = handler(an_event())
        assert isinstance(outcome, Succeeded)
        detail: dict[str, Any] = dict(outcome.detail or {})
    else:
        with pytest.raises(HandlerFailure) as raised:
            handler(an_event())
        failure = raised.value
        assert failure.error_type == case.error_type
        assert failure.permanent is case.permanent
        if case.retry_after == "120":
            assert failure.retry_after == 120
        elif case.retry_after == "date":
            assert failure.retry_after == now + timedelta(minutes=5)
        else:
            assert failure.retry_after is None
        detail = dict(failure.detail or {})
    assert detail["status"] == case.status
    assert detail["duration_seconds"] >= 0
    assert detail["webhook_id"] == webhook_id(an_event())
    assert SECRET not in repr(detail) and SECRET.removeprefix("whsec_") not in repr(detail)
    if case.status is not None:
        assert detail["body"] == ("" if case.status == 204 else f"answer {case.status}")
    if case.name == "slow":
        assert detail["duration_seconds"] < 0.9  # gave up at 0.3 s, did not wait for the 1 s answer
    assert receiver.refused == before  # every request verified


def test_detail_keeps_the_first_4_kib_of_the_body(receiver: LocalReceiver) -> None:
    outcome = handler_for(receiver.url("/status/200?big=1"))(an_event())
    detail = outcome.detail or {}
    assert detail["body"] == "x" * 4096 and detail["body_truncated"] is True


def test_the_receiver_gets_the_payload_signed_with_one_id_for_all_attempts(receiver: LocalReceiver) -> None:
    handler = handler_for(receiver.url("/status/500?tag=same-id"))
    for _ in range(2):
        with pytest.raises(HandlerFailure):
            handler(an_event("evt_same"))
    got = [r for r in receiver.requests if r.path.endswith("tag=same-id")]
    assert len(got) == 2 and all(r.verified for r in got)
    assert got[0].webhook_id == got[1].webhook_id == webhook_id(an_event("evt_same"))
    assert got[0].webhook_id != webhook_id(an_event("evt_other"))
    assert got[0].body == request_body(an_event("evt_same")) == '{"amount":12,"note":"é"}'.encode()
    assert got[0].headers["content-type"] == "application/json"
    assert got[0].headers["webhook-signature"].startswith("v1,")


def test_the_receiver_refuses_a_tampered_body_and_an_old_timestamp(receiver: LocalReceiver) -> None:
    key = decode_secret(SECRET)
    now = int(datetime.now(UTC).timestamp())
    good = sign([key], "msg_t", now, b'{"a":1}')
    old = sign([key], "msg_t", now - 600, b'{"a":1}')
    before = receiver.refused
    with httpx.Client() as client:
        assert client.post(receiver.url("/status/200"), content=b'{"a":1}', headers=good).status_code == 200
        tampered = client.post(receiver.url("/status/200"), content=b'{"a":2}', headers=good)
        stale = client.post(receiver.url("/status/200"), content=b'{"a":1}', headers=old)
    assert (tampered.status_code, stale.status_code) == (401, 401)
    assert b"no v1 signature matches" in tampered.content and b"too old" in stale.content
    assert receiver.refused == before + 2


# -- end to end: Ledger.run records the outcome ------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_run_records_each_outcome(case: Case, receiver: LocalReceiver, ledger: Ledger,
                                  clock: FakeClock) -> None:
    event = ledger.detect("payment.webhook", {"amount": 12}, key=f"evt_{case.name}")
    result = ledger.run(event.id, handler_for(url_of(case, receiver, clock.now)))
    attempt = ledger.show(event.id).attempts[-1]
    detail: dict[str, Any] = dict(attempt.detail or {})
    assert detail["status"] == case.status
    if case.error_type is None:
        assert (result.state, result.next_retry_at, attempt.error_type) == (State.SUCCEEDED, None, None)
        return
    assert attempt.error_type == case.error_type
    if case.permanent:
        assert (result.state, result.next_retry_at) == (State.DEAD, None)
        return
    assert result.state is State.FAILED
    wait = {"120": timedelta(seconds=120), "date": timedelta(minutes=5)}.get(case.retry_after or "",
                                                                             timedelta(seconds=10))
    assert result.next_retry_at == attempt.at + wait  # the policy's 10 s, or the receiver's Retry-After


def test_a_worker_delivers_due_events_and_retries_after_recovery(receiver: LocalReceiver, ledger: Ledger,
                                                                 clock: FakeClock) -> None:
    from failure_aware.worker import Worker

    down = handler_for(receiver.url("/status/503?retry_after=60"))
    events = [ledger.detect("payment.webhook", {"n": n}, key=f"w{n}") for n in range(5)]
    summary = Worker(ledger, down, concurrency=4).run(once=True)
    assert (summary.failed, summary.succeeded) == (5, 0)
    assert all(ledger.get(e.id).next_retry_at == clock.now + timedelta(seconds=60) for e in events)
    clock.advance(61)
    summary = Worker(ledger, handler_for(receiver.url("/status/200")), concurrency=4).run(once=True)
    assert summary.succeeded == 5
    assert all(ledger.get(e.id).state is State.SUCCEEDED for e in events)


def test_a_binary_answer_is_recorded_as_it_came(receiver: LocalReceiver, ledger: Ledger) -> None:
    # NUL bytes and invalid UTF-8 in the body: the detail keeps them replaced, and the 2xx stays a success
    event = ledger.detect("payment.webhook", {"amount": 1}, key="evt_binary")
    result = ledger.run(event.id, handler_for(receiver.url("/status/200?binary=1")))
    assert result.state is State.SUCCEEDED
    detail = dict(ledger.show(event.id).attempts[-1].detail or {})
    assert detail["body"].startswith("ok\ufffd\ufffd\ufffd") and detail["body_truncated"] is True
