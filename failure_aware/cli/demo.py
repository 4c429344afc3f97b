"""``failure-aware demo``: run the demo workload and show what the ledger saw.

Runs never mix: without ``--db`` the demo writes into its own file, ``failure-aware-demo.db`` in the working
directory, made afresh on every run (the previous run's file is replaced, and the demo says so); with
``--db`` it refuses a database that already holds events. So every figure it shows, and its closing
summary, is about this run alone.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.clusters import render_cluster, render_timeline
from failure_aware.cli.context import app
from failure_aware.cli.demo_scenario import (
    CRM_DOWN,
    OUTAGE,
    OUTAGE_RETRY_AFTER,
    SPAN,
    TYPES,
    SimulatedClock,
    Workload,
    open_demo,
    simulate,
    start_receiver,
)
from failure_aware.cli.events import render_detail
from failure_aware.cli.health import render_health
from failure_aware.cli.incidents import render_incident
from failure_aware.cli.webhooks import detail_lines
from failure_aware.config import Config
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.states import State
from failure_aware.ledger import Ledger
from failure_aware.webhooks.receiver import LocalReceiver

DEMO_FILE = "failure-aware-demo.db"


@cli.command()
def demo() -> None:
    """Run a small realistic workload (simulated two hours) and show retries, a dead letter, a burst.

    Without --db it uses its own database, ./failure-aware-demo.db, made afresh on every run (the previous
    run's is replaced); a --db that already holds events is refused, so runs never mix.
    """
    out = output.console()
    started = time.perf_counter()
    url, replaced = _demo_database(app().db_url)
    ledger, clock, world = open_demo(url)
    with ledger, start_receiver(world) as receiver:
        out.print(Rule("failure-aware demo"))
        out.print(f"database: [bold]{escape(ledger.url)}[/]"
                  + (" (the previous demo run's file was replaced: runs never mix)" if replaced else ""))
        out.print(
            f"simulating {int(SPAN.total_seconds() // 60)} minutes of deliveries: payment.webhook, crm.sync "
            f"(flaky), email.send (some addresses invalid), report.build; the API gateway that payments and "
            f"e-mails go through is down from minute {int(OUTAGE[0].total_seconds() // 60)} to "
            f"{int(OUTAGE[1].total_seconds() // 60)}."
        )
        out.print(
            "payment.webhook events are real HTTP: signed POSTs (Standard Webhooks) by the webhook handler "
            f"to a receiver this demo started at {receiver.url('/payments')}, which verifies every signature "
            f"and answers 503 with Retry-After: {OUTAGE_RETRY_AFTER} during the outage, 200 otherwise. "
            "The other types are handled in-process; only the clock is simulated."
        )
        run = simulate(ledger, clock, world)
        out.print(f"{run.detected} events detected; attempts run by `retry_due` once a simulated minute:")
        for outcome, count in sorted(run.outcomes.items()):
            out.print(f"  {count:4d}  {outcome}")
        _show_states(out, ledger)
        _show_retry_run(out, ledger, clock, world)
        _show_webhooks(out, ledger, receiver)
        notes = _show_dead_letter(out, ledger)
        notes += _show_clusters(out, ledger)
        _show_incidents(out, ledger)
        _show_health(out, ledger)
        _show_summary(out, ledger, receiver, notes)
    out.print(Rule())
    where = shlex.quote(app().db_url or f"sqlite:///{DEMO_FILE}")
    out.print(f"done in {time.perf_counter() - started:.1f}s. Look around with --db {escape(where)} (or "
              f"export FAILURE_AWARE_DB={escape(where)}): failure-aware events --state FAILED; failure-aware "
              "show ID; failure-aware clusters; failure-aware incidents; failure-aware health")


def _demo_database(given: str | None) -> tuple[str, bool]:
    """The demo's database URL, and whether a previous demo file was replaced.

    Without ``--db``: its own ``DEMO_FILE`` in the working directory, removed first when a previous run left
    it (only if it is a failure-aware database or empty: anything else is refused and left alone). With
    ``--db``: that database, refused (``ValidationError``, nothing written) when it already holds events.
    """
    if given is None:
        path = Path(DEMO_FILE)
        url = f"sqlite:///{DEMO_FILE}"
        if not path.exists():
            return url, False
        status = Ledger.schema_status(url)
        if status.version is None:
            raise ValidationError(f"{path} is not a failure-aware database, so the demo does not replace it; "
                                  "move it away, or give the demo another database with --db")
        for leftover in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)
        return url, True
    status = Ledger.schema_status(given)
    if not status.exists or status.version is None or status.version == 0 or status.version > status.latest:
        return given, False  # missing or empty: fine; foreign or newer: opening it says why
    with Ledger(given, readonly=True, config=Config()) as existing:
        held = sum(existing.state_counts().values())
    if held:
        raise ValidationError(
            f"{status.where} already holds {held} event(s): a demo run there would mix with them. Give an "
            f"empty database, or leave out --db (the demo then uses its own ./{DEMO_FILE}, made afresh on "
            "every run)")
    return given, False


def _show_states(out: Console, ledger: Ledger) -> None:
    out.print(Rule("where every event stands now", style="dim"))
    rows = []
    for event_type in TYPES:
        counts = ledger.state_counts(event_type=event_type)
        rows.append((event_type, *(counts.get(s, 0) for s in State)))
    out.print(output.table(None, ["type", *[s.value for s in State]], rows))


def _show_retry_run(out: Console, ledger: Ledger, clock: SimulatedClock, world: Workload) -> None:
    out.print(Rule("retries are scheduled, and run only when invoked", style="dim"))
    waiting = ledger.events(state=State.FAILED, limit=100)
    out.print(f"{len(waiting)} event(s) FAILED with a retry scheduled (the CRM went down at minute "
              f"{int(CRM_DOWN[0].total_seconds() // 60)}); nothing retries them on its own:")
    for event in waiting[:6]:
        out.print(f"  event {event.id} {event.event_type}: {event.attempt_count} attempt(s), last error "
                  f"{output.short(event.last_error, 45)!r}, next retry {output.when(event.next_retry_at)}")
    clock.now = world.start + SPAN
    due = ledger.due(limit=1000)
    out.print(f"three minutes later (now) {len(due)} event(s) are due and the CRM is back; "
              "running `retry --due` once:")
    results = ledger.retry_due(world.handle, worker="demo-operator")
    for result in results[:8]:
        out.print(f"  event {result.event_id}: attempt {result.attempt.number} {result.attempt.outcome} -> "
                  f"{output.state_text(result.state)}")
    if len(results) > 8:
        out.print(f"  ... and {len(results) - 8} more")


def _show_webhooks(out: Console, ledger: Ledger, receiver: LocalReceiver) -> None:
    out.print(Rule("webhooks: real HTTP failures, then a recovery", style="dim"))
    out.print(f"the receiver got {receiver.count} POST(s); {receiver.count - receiver.refused} had a valid "
              f"signature, {receiver.refused} were refused")
    recovered = None
    for event in ledger.events(event_type="payment.webhook", state=State.SUCCEEDED, limit=500):
        if event.attempt_count > 1:
            recovered = event
            break
    if recovered is None:
        out.print("no delivery needed a retry in this run")
        return
    out.print(f"event {recovered.id} failed during the outage and got through on a later attempt:")
    shown = ledger.show(recovered.id)
    out.print(render_detail(shown))
    for attempt in (shown.attempts[0], shown.attempts[-1]):
        lines = detail_lines(attempt.detail or {})
        out.print(f"attempt {attempt.number}'s detail: " + "; ".join(lines[:2]))
    out.print(f"(the policy alone would retry 1 minute after the first failure; the receiver's Retry-After: "
              f"{OUTAGE_RETRY_AFTER} made it 2)")


def _show_dead_letter(out: Console, ledger: Ledger) -> int:
    """A dead letter, annotated; returns the notes added (0 or 1)."""
    out.print(Rule("a dead letter, annotated", style="dim"))
    dead = ledger.events(state=State.DEAD, limit=1)
    if not dead:
        out.print("no event died in this run")
        return 0
    event = dead[0]
    ledger.annotate(event.id, "customer address bounced; fix the record, then revive", author="demo")
    out.print(render_detail(ledger.show(event.id)))
    return 1


def _show_clusters(out: Console, ledger: Ledger) -> int:
    """Correlate, and the outage's cluster, annotated; returns the notes added (0 or 1)."""
    out.print(Rule("is it failing repeatedly? correlate, then clusters", style="dim"))
    report = ledger.correlate()
    out.print(f"correlate ({report.mode}): {report.failures_read} failures read, {report.clusters_total} "
              f"cluster(s) stored (+{report.added} this run)")
    outage = [c for c in ledger.clusters(event_type="payment.webhook") if c.event_count >= 2]
    if not outage:
        out.print("no cluster found")
        return 0
    biggest = max(outage, key=lambda c: c.failure_count)
    ledger.annotate_cluster(biggest.id, "API gateway outage; retries recovered it", author="demo")
    out.print(render_cluster(ledger.cluster(biggest.id), max_attempts=6))
    out.print(render_timeline(ledger.timeline(buckets=60)))
    return 1


def _show_incidents(out: Console, ledger: Ledger) -> None:
    out.print(Rule("did several kinds of work fail together? incidents", style="dim"))
    found = ledger.incidents()
    if not found:
        out.print("no incident: no clusters of different types started together")
        return
    out.print(render_incident(ledger.incident(found[0].id)))


def _show_health(out: Console, ledger: Ledger) -> None:
    out.print(Rule("health", style="dim"))
    out.print(render_health(ledger.health()))


def _show_summary(out: Console, ledger: Ledger, receiver: LocalReceiver, notes: int) -> None:
    """What this run left in its database, counted from the ledger itself (it holds this run alone)."""
    out.print(Rule("summary of this run", style="dim"))
    states = ledger.state_counts()
    attempts: Counter[str] = Counter()
    for (_type, outcome), n in ledger.attempt_totals().items():
        attempts[outcome] += n
    clusters = ledger.clusters()
    incidents = ledger.incidents()
    clustered: Counter[str] = Counter(c.event_type for c in clusters)
    rows = [
        ("events", sum(states.values()),
         ", ".join(f"{states.get(s, 0)} {s.value}" for s in State if states.get(s, 0))),
        ("attempts", sum(attempts.values()), ", ".join(f"{n} {o}" for o, n in sorted(attempts.items()))),
        ("webhook deliveries", receiver.count,
         f"HTTP POSTs to the receiver; {receiver.count - receiver.refused} with a valid signature, "
         f"{receiver.refused} refused"),
        ("clusters", len(clusters), ", ".join(f"{n} {t}" for t, n in sorted(clustered.items())) or "-"),
        ("incidents", len(incidents), ", ".join(" + ".join(i.event_types) for i in incidents) or "-"),
        ("notes", notes, "by author demo: on a dead letter, on the outage's cluster"),
    ]
    out.print(output.table(None, ["what", "count", "detail"], rows))
    out.print(f"health verdict now: {ledger.health().verdict}")
