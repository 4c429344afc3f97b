"""Interchange commands (SPEC section 8): ``import`` JSON Lines or a legacy seed database, ``export``."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

import click

from failure_aware.cli import output
from failure_aware.cli.app import EXIT_ERROR, cli
from failure_aware.cli.context import app
from failure_aware.cli.progress import Progress
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.records import ImportReport
from failure_aware.interchange import legacy


@cli.command("import")
@click.argument("file", required=False, metavar="FILE.jsonl")
@click.option("--legacy", "legacy_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Import a SQLite database of the seed's v0.1-v0.3 schema instead of JSON Lines.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid lines and report the invalid ones (default: refuse the whole file).")
@output.json_option
def import_cmd(file: str | None, legacy_path: str | None, skip_invalid: bool, as_json: bool) -> None:
    """Import events with their attempts and notes from JSON Lines (FILE, or - for stdin).

    The whole file is checked first: an invalid line refuses it (exit 1, nothing written) unless
    --skip-invalid. Events whose type and key already exist are skipped and counted.
    """
    if (file is None) == (legacy_path is None):
        raise click.UsageError("give a JSON Lines FILE (or - for stdin), or --legacy PATH; exactly one")
    if legacy_path is not None and skip_invalid:
        raise click.UsageError("--skip-invalid applies to JSON Lines files, not to --legacy")
    left_behind: list[tuple[str, int, str]] | None = None
    if legacy_path is not None:  # checked (and refused) before the ledger is opened: nothing is made
        with legacy.open_legacy(legacy_path) as source:
            left_behind = source.tables_left_behind()
    ledger = app().ledger()
    with Progress() as progress:
        if legacy_path is not None:
            report = ledger.import_legacy(legacy_path, on_progress=progress)
        elif file == "-":
            report = ledger.import_file(sys.stdin.buffer, skip_invalid=skip_invalid, on_progress=progress)
        else:
            report = ledger.import_file(Path(str(file)), skip_invalid=skip_invalid, on_progress=progress)
    _print_report(report, as_json, left_behind)
    if report.invalid and not (report.imported or report.skipped_existing or report.annotations):
        click.echo("error (ValidationError): not one valid line: nothing was imported", err=True)
        click.get_current_context().exit(EXIT_ERROR)


def _print_report(report: ImportReport, as_json: bool, left_behind: list[tuple[str, int, str]] | None
                  ) -> None:
    if as_json:
        data = report.as_dict()
        data["invalid"] = [{"line": number, "problem": problem} for number, problem in report.invalid]
        if left_behind is not None:
            data["not_carried"] = [{"table": name, "rows": rows, "why": why}
                                   for name, rows, why in left_behind]
        output.print_json(data)
        return
    output.say(f"imported {report.imported} event(s) ({report.attempts} attempt(s), "
               f"{report.annotations} note(s)); skipped {report.skipped_existing} existing; "
               f"{len(report.invalid)} invalid line(s)")
    for number, problem in report.invalid:
        output.console().print(f"  line {number}: {problem}", markup=False)
    if left_behind:
        output.say("not carried over from the legacy database:")
        for name, rows, why in left_behind:
            output.console().print(f"  {output.visible(name)} ({rows:,} row(s)): {why}", markup=False)
    if report.attempts:
        output.console().print(f"next: run `{_command('correlate')}` to compute the failure clusters (and "
                               "incidents) of the imported history", markup=False)


def _command(name: str) -> str:
    """``failure-aware NAME`` as the user would type it next, with the ``--db`` they gave, if any."""
    db_url = app().db_url
    return f"failure-aware --db {shlex.quote(db_url)} {name}" if db_url else f"failure-aware {name}"


@cli.command("export")
@click.option("--type", "event_type", help="Only events of this type.")
@click.option("-o", "--output", "target", metavar="FILE", type=click.Path(dir_okay=False, writable=True),
              help="Write to FILE (replaced only once the export is complete) instead of stdout.")
def export_cmd(event_type: str | None, target: str | None) -> None:
    """Export events with their attempts, transitions and notes as JSON Lines (reads only).

    Importing the output into an empty database gives the same events, states, attempts and notes.
    """
    ledger = app().ledger(readonly=True)
    if target is None:
        # Records on a terminal's stdout would be torn by a progress display on the same screen.
        progress = Progress(enabled=False) if sys.stdout.isatty() else Progress()
        with progress:
            output.print_json_lines(ledger.export_events(event_type=event_type, on_progress=progress))
        return
    # Write next to the target and rename at the end, so a failed export never leaves half a file behind
    # (and never clobbers a previous good one).
    destination = Path(target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part",
                                             dir=destination.parent)
    except OSError as error:
        raise ValidationError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream, Progress() as progress:
            count = ledger.export_file(stream, event_type=event_type, on_progress=progress)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        try:
            os.replace(temporary, destination)
        except OSError as error:
            raise ValidationError(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    click.echo(f"exported {count} event(s) to {destination}", err=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
