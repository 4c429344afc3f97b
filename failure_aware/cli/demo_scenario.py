"""``failure-aware demo``: a small, realistic workload through the public API, printed as it goes.

Simulated time: the demo's clock starts two hours ago and moves forward in steps, so two hours of
deliveries, retries, an outage and its recovery take a few seconds, and end at the real present (the
health verdict is then about "now"). Nothing is faked beyond the clock: every event, attempt and
transition goes through ``Ledger`` into the database like any other.

``payment.webhook`` events are delivered for real: the demo starts a receiver on 127.0.0.1 (an ephemeral
port, ``start_receiver``) and the webhook handler POSTs each payload to it, signed per Standard Webhooks.
The receiver verifies every signature and answers as the payments provider would: 503 with
``Retry-After: 120`` during the outage, 200 otherwise. The other types are handled in-process.
"""

from __future__ import annotations

import base64
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy
from failure_aware.domain.records import AttemptResult, Event
from failure_aware.domain.timeutil import utc_now
from failure_aware.ledger import Ledger
from failure_aware.webhooks import Endpoint, WebhookHandler
from failure_aware.webhooks.receiver import Answer, LocalReceiver, Received

TYPES = ("payment.webhook", "crm.sync", "email.send", "report.build")
STEP = timedelta(minutes=1)
SPAN = timedelta(hours=2)
# Offsets from the start: the shared API gateway is down, so payments and e-mails fail together (an incident).
OUTAGE = (timedelta(minutes=62), timedelta(minutes=80))
GATEWAY_TYPES = ("payment.webhook", "email.send")
CRM_DOWN = (timedelta(minutes=110), timedelta(minutes=118))  # the CRM rejects everything: retries pile up
# The simulation stops here; the demo then shows the retries it left scheduled, moves the clock to the
# present (when they are due) and runs them with an explicit `retry --due`.
SIMULATED = SPAN - timedelta(minutes=3)
OUTAGE_RETRY_AFTER = "120"  # seconds: what the provider's 503 asks for during the outage
DEMO_SECRET_ENV = "FAILURE_AWARE_DEMO_WEBHOOK_SECRET"  # only in the demo handler's own environ mapping


class SimulatedClock:
    """A clock the demo moves forward by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Workload:
    """The demo's world: which deliveries fail, and when."""

    clock: SimulatedClock
    start: datetime
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    webhooks: WebhookHandler | None = None  # set by start_receiver: payments go over real HTTP

    def in_outage(self) -> bool:
        offset = self.clock.now - self.start
        return OUTAGE[0] <= offset < OUTAGE[1]

    def crm_down(self) -> bool:
        offset = self.clock.now - self.start
        return CRM_DOWN[0] <= offset < CRM_DOWN[1]

    def provider(self, _request: Received) -> Answer:
        """The payments provider's receiver, behind the gateway: down (503, Retry-After) during the outage,
        else 200."""
        if self.in_outage():
            return Answer(503, headers={"retry-after": OUTAGE_RETRY_AFTER}, body=b"provider outage")
        return Answer(200, headers={"content-type": "application/json"}, body=b'{"received": true}')

    def handle(self, event: Event) -> object:
        """The handler: payments by webhook (real HTTP), e-mail through the same gateway (both fail during
        its outage), a flaky CRM, strict e-mail validation."""
        if event.event_type == "payment.webhook":
            if self.webhooks is None:
                raise RuntimeError("the demo's receiver is not running (start_receiver)")
            return self.webhooks(event)
        if event.event_type in GATEWAY_TYPES and self.in_outage():
            host = f"api-{self.rng.randint(1, 4)}.gateway.example"
            raise ConnectionError(f"503 Service Unavailable from {host} after {self.rng.randint(20, 30)}s")
        if event.event_type == "crm.sync" and self.crm_down():
            raise ConnectionRefusedError("CRM at crm.example:443 refused the connection")
        if event.event_type == "crm.sync" and self.rng.random() < 0.3:
            raise TimeoutError(f"CRM did not answer within {self.rng.choice([5, 10])}s (record {event.key})")
        if event.event_type == "email.send" and event.payload.get("to", "").endswith("@invalid"):
            raise ValueError(f"address {event.payload['to']!r} is not deliverable")
        return None


def start_receiver(world: Workload) -> LocalReceiver:
    """Start the payments provider's receiver on 127.0.0.1 and point the world's webhook handler at it.

    The caller owns the receiver: close it (``with``) when the demo ends. The secret is made here, for this
    run only, and lives in the handler's and the receiver's memory.
    """
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    receiver = LocalReceiver(secret, world.provider)
    endpoint = Endpoint("payment.webhook", receiver.url("/payments"), DEMO_SECRET_ENV, timeout_seconds=5)
    world.webhooks = WebhookHandler({"payment.webhook": endpoint}, environ={DEMO_SECRET_ENV: secret})
    return receiver


def demo_config() -> Config:
    """Policies that make two simulated hours interesting: quick retries, e-mail validation is final."""
    quick = RetryPolicy(base_seconds=60, factor=2, max_delay_seconds=900, max_attempts=5)
    return Config(
        policies=PolicySet(
            default=quick,
            overrides={
                "email.send": RetryPolicy(
                    base_seconds=60, max_attempts=3, non_retryable=frozenset({"ValueError"})
                )
            },
        )
    )


@dataclass(frozen=True)
class DemoRun:
    """What the simulation did: where, when, and the outcome of every attempt it ran."""

    url: str
    start: datetime
    end: datetime
    detected: int
    outcomes: dict[str, int]


def simulate(ledger: Ledger, clock: SimulatedClock, world: Workload) -> DemoRun:
    """Two simulated hours (less the last three minutes): new events and a `retry_due` pass every minute."""
    run_id = world.start.strftime("%Y%m%dT%H%M%S")
    outcomes: Counter[str] = Counter()
    detected = 0
    minute = 0
    while clock.now < world.start + SIMULATED:
        for _ in range(world.rng.choice([0, 1, 1, 2])):
            detected += 1
            ledger.detect(*_new_event(world.rng, detected), key=f"demo-{run_id}-{detected}")
        if world.crm_down():  # contacts keep changing while the CRM is down: their syncs will wait
            detected += 1
            ledger.detect("crm.sync", {"contact": f"c_{detected}"}, key=f"demo-{run_id}-{detected}")
        for result in ledger.retry_due(world.handle, worker="demo-worker"):
            outcomes[_describe(result)] += 1
        minute += 1
        clock.now = world.start + minute * STEP
    return DemoRun(ledger.url, world.start, clock.now, detected, dict(outcomes))


def open_demo(url: str | None) -> tuple[Ledger, SimulatedClock, Workload]:
    """The demo's ledger (simulated clock two hours back) and its world."""
    start = utc_now().replace(microsecond=0) - SPAN
    clock = SimulatedClock(start)
    return Ledger(url, config=demo_config(), clock=clock), clock, Workload(clock=clock, start=start)


def _new_event(rng: random.Random, n: int) -> tuple[str, dict[str, object]]:
    event_type = rng.choices(TYPES, weights=(5, 3, 2, 1))[0]
    if event_type == "payment.webhook":
        return event_type, {"invoice": f"inv_{1000 + n}", "amount": rng.randint(5, 500)}
    if event_type == "crm.sync":
        return event_type, {"contact": f"c_{rng.randint(1, 9999)}"}
    if event_type == "email.send":
        to = "ops@invalid" if rng.random() < 0.15 else f"user{n}@example.com"
        return event_type, {"to": to, "template": "receipt"}
    return event_type, {"report": "daily", "day": n % 30}


def _describe(result: AttemptResult) -> str:
    return f"{result.attempt.outcome} -> {result.state}"
