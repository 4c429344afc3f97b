"""Commands: ``incidents`` and ``incidents show`` (SPEC 13), reading what ``correlate`` stored."""

from __future__ import annotations

from datetime import datetime

import click
from rich.console import Group, RenderableType
from rich.text import Text

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.clusters import top_fingerprint_cell
from failure_aware.cli.context import app
from failure_aware.cli.params import SINCE
from failure_aware.domain.cluster_records import Incident, IncidentDetail


@cli.group(invoke_without_command=True)
@click.option("--type", "event_type", help="Only incidents with a cluster of this event type.")
@click.option("--active", is_flag=True, help="Only active incidents (one of their clusters is active).")
@click.option("--since", type=SINCE, help="Only incidents that ended at or after TIME (or e.g. 24h ago).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N incidents (newest first).")
@output.json_option
@click.pass_context
def incidents(ctx: click.Context, event_type: str | None, active: bool, since: datetime | None,
              limit: int | None, as_json: bool) -> None:
    """List incidents: failure clusters of several types that started together (reads only)."""
    if ctx.invoked_subcommand is not None:
        return
    found = app().ledger(readonly=True).incidents(event_type=event_type, active=active, since=since,
                                                  limit=limit)
    if as_json:
        output.print_json([i.as_dict() for i in found])
        return
    if not found:
        output.say("no incidents (run `failure-aware correlate` to compute them from history)")
        return
    rows = [
        (i.id, output.when(i.start), output.when(i.end), i.cluster_count,
         output.short(", ".join(i.event_types), 40), i.failure_count, i.event_count,
         "[bold red]active[/]" if i.active else "-", _evidence(i))
        for i in found
    ]
    output.console().print(output.table(
        None, ["id", "from", "to", "clusters", "types", "failures", "events", "", "shared error"], rows))


@incidents.command("show")
@click.argument("incident_id")
@output.json_option
def show_incident(incident_id: str, as_json: bool) -> None:
    """One incident: its clusters, their types and errors, and the fingerprints they share."""
    detail = app().ledger(readonly=True).incident(incident_id)
    if as_json:
        output.print_json(detail.as_dict())
    else:
        output.console().print(render_incident(detail))


def render_incident(detail: IncidentDetail) -> Group:
    """The rich rendering of ``incidents show``."""
    i = detail.incident
    parts: list[RenderableType] = [
        Text.from_markup(
            f"[bold]incident {i.id}[/]  {output.when(i.start)} -> {output.when(i.end)}  {i.cluster_count} "
            f"clusters of {len(i.event_types)} types, {i.failure_count} failures of {i.event_count} events"
            + ("  [bold red]active[/]" if i.active else "")
        ),
        Text(f"linked: clusters of different event types starting at most {i.window_seconds}s apart, in "
             "chains"),
    ]
    if i.shared_fingerprints:
        parts.append(output.table(
            "shared errors (the evidence)", ["fingerprint", "clusters", "failures", "example"],
            [(s.fingerprint, s.clusters, s.failures, output.short(s.example, 70))
             for s in i.shared_fingerprints],
        ))
    parts.append(output.table(
        "clusters", ["id", "type", "from", "to", "failures", "events", "active", "top error"],
        [(c.id, c.event_type, output.when(c.window_start), output.when(c.window_end), c.failure_count,
          c.event_count, "[bold red]active[/]" if c.active else "-", top_fingerprint_cell(c))
         for c in detail.clusters],
    ))
    return Group(*parts)


def _evidence(incident: Incident) -> str:
    if not incident.shared_fingerprints:
        return "-"
    top = incident.shared_fingerprints[0]
    return f"{top.fingerprint} in {top.clusters} clusters"
