"""``deliver ID``: deliver one event's webhook now, by hand, and print what the receiver answered.

It is ``run ID --handler failure_aware.webhooks:deliver`` with the answer shown: the attempt is claimed and
recorded like any other (a delivery the receiver saw is in history, so nothing delivers it again unseen).
``--dry-run`` shows the signed request instead, and sends and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.markup import escape

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.params import POSITIVE_DURATION
from failure_aware.domain.records import Event
from failure_aware.events.claims import DEFAULT_LEASE_SECONDS
from failure_aware.webhooks import WebhookHandler

BODY_SHOWN_CHARS = 300


@cli.command()
@click.argument("event_id", type=int)
@click.option("--force", is_flag=True,
              help="Deliver a FAILED event even before its next_retry_at (recorded as forced).")
@click.option("--dry-run", is_flag=True, help="Show the signed request; send nothing, write nothing.")
@click.option("--lease", "lease_seconds", type=POSITIVE_DURATION, default=DEFAULT_LEASE_SECONDS,
              show_default="5m",
              help="How long the attempt may take before `recover` may close it.")
@output.json_option
def deliver(event_id: int, force: bool, dry_run: bool, lease_seconds: float, as_json: bool) -> None:
    """Deliver one event's webhook now (its [webhooks."TYPE"] endpoint) and print the answer and outcome."""
    handler = WebhookHandler()
    handler.configure(app().config())  # every secret checked before anything is claimed
    try:
        event = app().ledger(readonly=True).get(event_id)
        handler.endpoint_for(event.event_type)  # no endpoint for its type: an error, nothing claimed
        if dry_run:
            _show_request(handler, event, as_json)
            return
        result = app().ledger().run(event_id, handler, force=force, lease_seconds=lease_seconds)
    finally:
        handler.close()
    detail = result.attempt.detail
    if as_json:
        output.print_json(result.as_dict())
        return
    out = output.console()
    attempt = result.attempt
    line = (f"event {event_id}: attempt {attempt.number} {attempt.outcome} -> "
            f"{output.state_text(result.state)}")
    if result.next_retry_at is not None:
        line += f", retry from {output.when(result.next_retry_at)}"
    out.print(line)
    if attempt.error_type:
        out.print(f"  {escape(attempt.error_type)}: {output.short(attempt.error, 200)}")
    for text in detail_lines(detail or {}):
        out.print(f"  {text}")


def detail_lines(detail: Mapping[str, Any]) -> list[str]:
    """An attempt's webhook detail as short lines: the answer, Retry-After or Location, the id, the body."""
    lines = []
    if "url" in detail:
        status = detail.get("status")
        answered = f"answered {status}" if status is not None else "no answer"
        seconds = detail.get("duration_seconds", 0)
        lines.append(f"POST {escape(str(detail['url']))}: {answered} in {seconds:.3f}s")
    for key in ("retry_after", "location", "webhook_id"):
        if detail.get(key):
            lines.append(f"{key}: {output.short(str(detail[key]), 200)}")
    if detail.get("body"):
        more = " (cut)" if detail.get("body_truncated") or len(detail["body"]) > BODY_SHOWN_CHARS else ""
        lines.append(f"body{more}: {output.short(detail['body'], BODY_SHOWN_CHARS)}")
    return lines


def _show_request(handler: WebhookHandler, event: Event, as_json: bool) -> None:
    delivery = handler.prepare(event)
    body = delivery.body.decode("utf-8", errors="replace")
    if as_json:
        output.print_json({"event_id": event.id, "method": "POST", "url": delivery.endpoint.shown_url,
                           "headers": delivery.headers, "body": body})
        return
    out = output.console()
    out.print(f"POST {escape(delivery.endpoint.shown_url)}  (timeout {delivery.endpoint.timeout_seconds:g}s, "
              f"connect {delivery.endpoint.connect_timeout_seconds:g}s)")
    for name, value in delivery.headers.items():
        out.print(f"{name}: {escape(value)}")
    out.print("")
    out.print(output.short(body, 2000))
    out.print("[dim](dry run: nothing sent, nothing written)[/]")
