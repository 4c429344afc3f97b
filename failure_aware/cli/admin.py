"""Administration: the schema version (``db version``), schema upgrades (``db upgrade``) and ``verify``."""

from __future__ import annotations

import click
from rich.markup import escape

from failure_aware.cli import output
from failure_aware.cli.app import EXIT_ERROR, cli
from failure_aware.cli.context import app
from failure_aware.cli.progress import Progress
from failure_aware.domain.errors import SchemaError
from failure_aware.ledger import Ledger


@cli.group()
def db() -> None:
    """The database schema: show its version, apply upgrades."""


@db.command("version")
@output.json_option
def db_version(as_json: bool) -> None:
    """Show the schema version of the database (reads only; a missing SQLite file is not created).

    Exits 1 when the database cannot be used by this failure-aware (a newer or foreign schema).
    """
    status = Ledger.schema_status(app().db_url)
    if not status.exists:
        raise SchemaError(status.problem or f"no failure-aware database at {status.where}")
    if as_json:
        output.print_json(status.as_dict())
    elif status.version is None:
        output.say(f"{escape(status.where)}: not a failure-aware database")
    elif status.version == 0:
        output.say(f"{escape(status.where)}: no failure-aware schema yet (version 0); `failure-aware db "
                   f"upgrade` or the first write creates version {status.latest}")
    else:
        output.say(f"{escape(status.where)}: schema version {status.version} "
                   f"(this failure-aware: {status.latest})")
        for step in status.pending:
            output.say(f"  pending {step.version}: {step.description}")
        if status.pending:
            output.say("  apply with: failure-aware db upgrade")
    usable = status.version is not None and status.version <= status.latest
    if not usable:
        click.echo(f"error (SchemaError): {status.problem}", err=True)
        click.get_current_context().exit(EXIT_ERROR)


@db.command("upgrade")
@output.json_option
def db_upgrade(as_json: bool) -> None:
    """Apply pending schema migrations, each in one transaction (creates the schema in an empty database)."""
    context = app()
    before = Ledger.schema_status(context.db_url)
    if before.version is None or before.version > before.latest:
        raise SchemaError(before.problem or f"{before.where}: unknown schema")
    created = before.version == 0
    applied = [] if created else before.pending
    context.ledger(upgrade=True)  # opening applies what is pending (or creates the schema), then checks it
    if as_json:
        output.print_json({
            "database": before.where, "from_version": before.version, "to_version": before.latest,
            "created": created,
            "applied": [{"version": m.version, "description": m.description} for m in applied],
        })
        return
    if created:
        output.say(f"{escape(before.where)}: created the failure-aware schema at version {before.latest}")
        return
    for step in applied:
        output.say(f"applied {step.version}: {step.description}")
    if applied:
        output.say(f"{escape(before.where)}: now at schema version {before.latest}")
    else:
        output.say(f"{escape(before.where)}: already at schema version {before.latest}")


@cli.command()
@click.option("--digest", "show_digest", is_flag=True,
              help="Also print one digest of all history, to keep elsewhere and compare later.")
@output.json_option
def verify(show_digest: bool, as_json: bool) -> None:
    """Check that derived data agrees with history and that history is protected and untampered.

    The projection must equal a replay of history, the counters a recount, the clusters a rebuild; the
    immutability triggers must refuse a change (tried in a transaction that is always rolled back: nothing
    is written); every event's hash chain must recompute from its rows. Exits 1 naming each event whose
    history disagrees. With --digest, also prints one digest of all history (it changes with every row
    written; a copy kept elsewhere reveals a whole event removed or a chain rewritten).
    """
    with Progress() as progress:
        report = app().ledger(readonly=True).verify(on_progress=progress)
    if as_json:
        output.print_json(report.as_dict())
    else:
        checked = "projection, counters, triggers, hash chains"
        checked += ", clusters" if report.clusters_checked else ""
        if report.ok:
            output.say(f"[green]ok[/]: {report.checked_events} event(s) checked ({checked})")
        else:
            output.say(f"[bold red]{len(report.problems)} problem(s)[/] in {report.checked_events} event(s) "
                       f"checked ({checked}):")
            for problem in report.problems:
                output.console().print(f"  {output.screen_times(problem)}", markup=False)
        for note in report.notes:
            output.console().print(f"  note: {output.screen_times(note)}", markup=False)
        if show_digest:
            output.say(f"digest {report.digest} ({report.digest_rows} history rows)")
    if not report.ok:
        click.get_current_context().exit(EXIT_ERROR)
