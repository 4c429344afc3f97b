"""Commands about events: detect, report, events, show, annotate."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.params import COUNT, JSON_OBJECT, SINCE, STATE_CHOICE, TIME, RetryAfterParam
from failure_aware.domain.durations import format_duration
from failure_aware.domain.records import EventDetail
from failure_aware.ledger import operator_name


@cli.command()
@click.argument("event_type")
@click.option("--key", help="Idempotency key, unique per event type (generated when omitted).")
@click.option("--payload", type=JSON_OBJECT,
              help="The event's data, a JSON object; @FILE reads it from FILE, - from stdin.")
@click.option("--at", type=TIME, help="When it was detected (RFC 3339 with zone; default now).")
@output.json_option
def detect(event_type: str, key: str | None, payload: dict[str, Any] | None, at: datetime | None,
           as_json: bool) -> None:
    """Record an event as PENDING (an existing TYPE + --key returns the existing event)."""
    event = app().ledger().detect(event_type, payload, key=key, at=at)
    if as_json:
        output.print_json(event.as_dict())
    else:
        output.say(f"event {event.id} {event.event_type} key={output.plain(event.key)} "
                   f"{output.state_text(event.state)}")


@cli.command()
@click.argument("event_id", type=int)
@click.option("--ok", "succeeded", is_flag=True, help="The attempt succeeded.")
@click.option("--failed", is_flag=True, help="The attempt failed.")
@click.option("--error-type", help="Exception or error class name, e.g. TimeoutError.")
@click.option("--error", "error_message", help="The error message.")
@click.option("--at", type=TIME, help="When the outcome was known (default now).")
@click.option("--force", is_flag=True, help="Record it even before next_retry_at (noted as forced).")
@click.option("--actor", help="Who ran it (default: you, with --force; otherwise 'system').")
@click.option("--permanent", is_flag=True,
              help="A failure not worth retrying: the event goes to DEAD at once.")
@click.option("--retry-after", type=RetryAfterParam(), metavar="SECONDS|TIME",
              help="A failure's earliest next try: seconds (or a duration) after --at, or a time (capped by "
                   "max_retry_after, default 24h).")
@click.option("--detail", type=JSON_OBJECT, help="A JSON object kept with the attempt (@FILE, - for stdin).")
@output.json_option
def report(event_id: int, succeeded: bool, failed: bool, error_type: str | None, error_message: str | None,
           at: datetime | None, force: bool, actor: str | None, permanent: bool,
           retry_after: float | datetime | None, detail: dict[str, Any] | None, as_json: bool) -> None:
    """Record an attempt you ran yourself, and its outcome (--ok or --failed)."""
    if succeeded == failed:
        raise click.UsageError("say how the attempt ended: --ok or --failed (exactly one)")
    who = actor or (operator_name() if force else "system")
    result = app().ledger().report(
        event_id, succeeded, error_type=error_type, error=error_message, at=at, force=force, actor=who,
        permanent=permanent, retry_after=retry_after, detail=detail,
    )
    if as_json:
        output.print_json(result.as_dict())
    else:
        output.say(f"event {event_id}: attempt {result.attempt.number} {result.attempt.outcome} -> "
                   f"{output.state_text(result.state)}  ({result.reason})")


@cli.command()
@click.option("--state", type=STATE_CHOICE, help="Only events in this state.")
@click.option("--type", "event_type", help="Only events of this type.")
@click.option("--since", type=SINCE, help="Only events detected since TIME (RFC 3339, or e.g. 1h ago).")
@click.option("--limit", type=COUNT, default=50, show_default=True, help="At most N events.")
@click.option("--before-id", type=COUNT, help="Page: events with ids below this one.")
@output.json_option
def events(state: str | None, event_type: str | None, since: datetime | None, limit: int,
           before_id: int | None, as_json: bool) -> None:
    """List events, newest first (reads only)."""
    found = app().ledger(readonly=True, missing_is_empty=True).events(
        state=state, event_type=event_type, since=since, limit=limit, before_id=before_id
    )
    if as_json:
        output.print_json([e.as_dict() for e in found])
        return
    if not found:
        filtered = any(v is not None for v in (state, event_type, since, before_id))
        output.say("no events match" if filtered else "no events recorded yet")
        return
    rows = [
        (e.id, e.event_type, output.short(e.key, 24), output.state_text(e.state), e.attempt_count,
         output.when(e.detected_at), output.when(e.next_retry_at), output.short(e.last_error, 40))
        for e in found
    ]
    out = output.console()
    out.print(output.table(None, ["id", "type", "key", "state", "tries", "detected", "next retry",
                                  "last error"], rows))
    if len(found) == limit:
        out.print(f"[dim]more: --before-id {found[-1].id}[/]")


@cli.command()
@click.argument("event_id", type=int)
@output.json_option
def show(event_id: int, as_json: bool) -> None:
    """An event with its attempts, transitions and annotations (reads only)."""
    detail = app().ledger(readonly=True).show(event_id)
    if as_json:
        output.print_json(detail.as_dict())
        return
    output.console().print(render_detail(detail))


def render_detail(detail: EventDetail) -> Group:
    """The rich rendering of ``show``."""
    e = detail.event
    plain = output.plain
    head = Text.from_markup(
        f"[bold]event {e.id}[/] {e.event_type} key={plain(e.key)}  {output.state_text(e.state)}"
        f"  detected {output.when(e.detected_at)}"
        + (f"  next retry {output.when(e.next_retry_at)}" if e.next_retry_at else "")
        + (f"  claimed by {plain(e.claimed_by)} until {output.when(e.lease_expires_at)}"
           if e.claimed_by else "")
    )
    parts: list[Any] = [head]
    attempts = [
        (a.number, output.when(a.at), a.outcome, output.short(a.error_type, 40), output.short(a.error, 50),
         _took(a.duration_seconds), plain(a.actor) + (" (forced)" if a.forced else ""))
        for a in detail.attempts
    ]
    if attempts:
        parts.append(output.table("attempts", ["#", "at", "outcome", "error type", "error", "took", "by"],
                                  attempts))
    for a in detail.attempts:  # what a runner or caller kept with an attempt: shown whole, as text
        if a.detail is not None:
            parts.append(Text(f"attempt {a.number} detail: "
                              + output.visible(json.dumps(a.detail, ensure_ascii=False))))
        if a.traceback:
            parts.append(Text(f"attempt {a.number} traceback:\n" + output.visible(a.traceback.rstrip()),
                              style="dim"))
    history = [
        (output.when(t.at), t.from_state or "-", output.state_text(t.to_state), plain(t.actor),
         plain(output.screen_times(t.reason)))
        for t in detail.transitions
    ]
    parts.append(output.table("transitions", ["at", "from", "to", "by", "reason"], history))
    if detail.annotations:
        notes = [(output.when(n.at), plain(n.author), plain(n.text)) for n in detail.annotations]
        parts.append(output.table("annotations", ["at", "author", "note"], notes))
    if detail.cluster_ids:
        parts.append(Text("clusters: " + ", ".join(detail.cluster_ids)))
    if detail.incident_ids:
        parts.append(Text("incidents: " + ", ".join(detail.incident_ids)))
    return Group(*parts)


def _took(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


@cli.command()
@click.argument("target", nargs=-1, required=True, metavar="[EVENT_ID] TEXT")
@click.option("--cluster", "cluster_id", metavar="CLUSTER_ID",
              help="Annotate this cluster (kept against its type and time span) instead of an event.")
@click.option("--author", help="Who writes the note (default: the OS user).")
@output.json_option
def annotate(target: tuple[str, ...], cluster_id: str | None, author: str | None, as_json: bool) -> None:
    """Add a note to an event (EVENT_ID TEXT) or a cluster (--cluster ID TEXT); notes are only added."""
    ledger = app().ledger()
    if cluster_id is not None:
        if len(target) != 1:
            raise click.UsageError("with --cluster give only the note: annotate --cluster ID TEXT")
        note = ledger.annotate_cluster(cluster_id, target[0], author=author)
        where = f"cluster {cluster_id}"
    else:
        if len(target) != 2 or not target[0].isdigit():
            raise click.UsageError("give an event id and the note: annotate EVENT_ID TEXT")
        note = ledger.annotate(int(target[0]), target[1], author=author)
        where = f"event {target[0]}"
    if as_json:
        output.print_json(note.as_dict())
    else:
        output.say(f"note {note.id} added to {where} by {note.author}")
