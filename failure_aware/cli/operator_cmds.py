"""Operator commands: revive (one event, or every event that died since a time) and bury.

Both are recorded with an actor (default: the OS user) and a reason; neither rewrites history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.params import COUNT, SINCE
from failure_aware.domain.records import Event
from failure_aware.domain.timeutil import format_time


def _reason_kwargs(actor: str | None, reason: str | None) -> dict[str, Any]:
    """Only what the operator gave: the library supplies the default actor (OS user) and reason."""
    given: dict[str, Any] = {"actor": actor}
    if reason is not None:
        given["reason"] = reason
    return given


def _moved(event: Event, before: str, as_json: bool) -> None:
    if as_json:
        output.print_json(event.as_dict())
    else:
        output.say(f"event {event.id} {event.event_type}: {output.state_text(before)} -> "
                   f"{output.state_text(event.state)}")


@cli.command()
@click.argument("event_id", type=int, required=False)
@click.option("--type", "event_type", help="Bulk: only events of this type.")
@click.option("--since", type=SINCE,
              help="Bulk: every event that died at or after TIME (RFC 3339, or a duration ago such as 24h).")
@click.option("--limit", type=COUNT, help="Bulk: revive at most N events (lowest ids first).")
@click.option("--dry-run", is_flag=True, help="Bulk: list what would be revived, change nothing.")
@click.option("--actor", help="Who revives (default: the OS user).")
@click.option("--reason", help="Why, recorded with the transition.")
@output.json_option
def revive(*, event_id: int | None, event_type: str | None, since: datetime | None, limit: int | None,
           dry_run: bool, actor: str | None, reason: str | None, as_json: bool) -> None:
    """Bring DEAD events back to PENDING: one by ID, or in bulk with --since (and --type)."""
    if event_id is not None:
        if since is not None or event_type is not None or limit is not None or dry_run:
            raise click.UsageError("give either an event ID or --since (with --type, --limit, --dry-run), "
                                   "not both")
        _moved(app().ledger().revive(event_id, **_reason_kwargs(actor, reason)), "DEAD", as_json)
        return
    if since is None:
        raise click.UsageError("say what to revive: an event ID, or --since TIME (e.g. --since 24h) for "
                               "every event that died since then")
    ledger = app().ledger(readonly=dry_run)
    ids = ledger.revive_dead(since=since, event_type=event_type, dry_run=dry_run, limit=limit,
                             **_reason_kwargs(actor, reason))
    if as_json:
        output.print_json({"dry_run": dry_run, "since": format_time(since), "event_type": event_type,
                           "count": len(ids), "event_ids": ids})
        return
    what = f" of type {event_type}" if event_type else ""
    verb = "would revive" if dry_run else "revived"
    output.say(f"{verb} {len(ids)} event(s){what} that died since {output.when(since)}"
               + (": " + ", ".join(map(str, ids)) if ids else ""))


@cli.command()
@click.argument("event_id", type=int)
@click.option("--actor", help="Who gives up on it (default: the OS user).")
@click.option("--reason", help="Why, recorded with the transition.")
@output.json_option
def bury(event_id: int, actor: str | None, reason: str | None, as_json: bool) -> None:
    """Give up on a FAILED event: it becomes DEAD and is no longer retried."""
    _moved(app().ledger().bury(event_id, **_reason_kwargs(actor, reason)), "FAILED", as_json)
