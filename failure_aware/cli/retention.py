"""``archive`` (SPEC 15, docs/retention.md): old, finished history written to a file, then removed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.markup import escape

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.params import SINCE
from failure_aware.cli.progress import Progress
from failure_aware.retention import ArchiveReport


@cli.command("archive")
@click.option("--before", required=True, type=SINCE, metavar="TIME",
              help="Take finished events whose last activity is before TIME (RFC 3339, or a duration ago "
                   "such as 90d).")
@click.option("--type", "event_type", help="Only events (and cluster notes) of this type.")
@click.option("--dry-run", is_flag=True,
              help="Print what would leave (counts by type and state, time range, size); write nothing.")
@click.option("--to", "target", metavar="FILE", type=click.Path(dir_okay=False),
              help="The archive file to write (JSON Lines; gzip when it ends in .gz); must not exist. "
                   "Required unless --dry-run.")
@click.option("--chunk", "chunk_events", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Events removed per transaction (workers wait on at most one chunk's rows).")
@click.option("--max-busy", type=click.FloatRange(0, 1, min_open=True), default=0.25, show_default=True,
              metavar="FRACTION",
              help="Share of its run the archive may be busy: it pauses after each page and chunk in "
                   "proportion to its cost, so workers keep their pace (1: never pause).")
@output.json_option
def archive_cmd(before: datetime, event_type: str | None, dry_run: bool, target: str | None,
                chunk_events: int, max_busy: float, as_json: bool) -> None:
    """Archive old, finished history: write it to FILE, sync it, then remove it, recorded.

    Whole events that are SUCCEEDED or DEAD and whose last activity is before TIME leave with their
    attempts, transitions and notes (PENDING, IN_FLIGHT and FAILED events never do), and the cluster
    notes and clusters wholly before TIME. The file (with a manifest line) is synced to disk before
    anything is removed; removal goes in chunks, each recorded in the archive table with the file's
    SHA-256. `import FILE` brings the events back into any database. Nothing runs by itself: schedule
    this command yourself (docs/retention.md).
    """
    if target is None and not dry_run:
        raise click.UsageError("--to FILE is required (or --dry-run to only see what would leave)")
    ledger = app().ledger(readonly=dry_run)
    with Progress() as progress:  # on stderr, only when it is a terminal (FAILURE_AWARE_PROGRESS=0: off)
        report = ledger.archive(before, to=None if target is None else Path(target), event_type=event_type,
                                dry_run=dry_run, on_progress=progress, chunk_events=chunk_events,
                                max_busy=max_busy)
    if as_json:
        output.print_json(report.as_dict())
        return
    _print(report)


def _print(report: ArchiveReport) -> None:
    what = "would leave" if report.dry_run else "archived"
    span = ""
    if report.first_detected_at is not None:
        span = f", detected from {output.when(report.first_detected_at)}, last activity " \
               f"{output.when(report.last_activity_at)}"
    output.say(f"{what}: {report.events} event(s), {report.attempts} attempt(s), {report.transitions} "
               f"transition(s), {report.annotations} note(s), {report.cluster_notes} cluster note(s), "
               f"{report.clusters} cluster(s){span}")
    for event_type, states in report.by_type_state.items():
        counts = ", ".join(f"{state} {n}" for state, n in states.items())
        output.console().print(f"  {output.visible(event_type)}: {counts}", markup=False)
    if report.dry_run:
        output.say(f"size: {report.size_bytes:,} bytes of JSON Lines (before any gzip); nothing was written")
        return
    if report.file_sha256 is None:
        output.say("nothing to archive: no file written, nothing removed")
        return
    output.say(f"file: {escape(str(report.file))} ({report.size_bytes:,} bytes, sha256 {report.file_sha256})")
    output.say(f"removed {report.removed_events} event(s) in {report.chunks} recorded chunk(s); digest of "
               f"the removed history {report.digest}")
    if report.kept_changed:
        output.say(f"{report.kept_changed} event(s) changed while the file was written (revived or "
                   "annotated): they stay; a later archive takes them when they qualify again")
