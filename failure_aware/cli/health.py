"""Command: ``health``: the verdict on how the work is going, with its reasons (SPEC section 6).

The exit code follows the verdict (0 OK, 1 DEGRADED, 2 CRITICAL), so a cron job or a monitoring probe can
act on it; 3 means the check itself could not run (no database, bad URL or config), which a probe must not
mistake for a verdict.
"""

from __future__ import annotations

import click
from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from failure_aware.cli import output
from failure_aware.cli.app import cli, fail
from failure_aware.cli.context import app
from failure_aware.diagnostics.health_report import EventMark, HealthFigures, HealthReport, Verdict
from failure_aware.domain.durations import format_duration
from failure_aware.domain.errors import FailureAwareError
from failure_aware.domain.states import State

EXIT_CHECK_FAILED = 3

VERDICT_STYLES = {Verdict.OK: "bold green", Verdict.DEGRADED: "bold yellow", Verdict.CRITICAL: "bold red"}


@cli.command()
@click.option("--type", "event_type", help="Only events of this type.")
@output.json_option
def health(event_type: str | None, as_json: bool) -> None:
    """Health verdict (OK / DEGRADED / CRITICAL) with its reasons, overall and per event type (reads only).

    Exit code: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 when the check could not run. Thresholds come from the
    [health] table of the config file.
    """
    try:
        report = app().ledger(readonly=True).health(event_type=event_type)
    except FailureAwareError as error:
        fail(error, EXIT_CHECK_FAILED)
    if as_json:
        output.print_json(report.as_dict())
    else:
        output.console().print(render_health(report))
    click.get_current_context().exit(report.exit_code)


def render_health(report: HealthReport) -> Group:
    """The rich rendering of a health report: verdict, reasons, a table per type, notable events."""
    scope = f" for {report.event_type}" if report.event_type else ""
    parts: list[Text | object] = [Text.from_markup(
        f"{_verdict(report.verdict)}{escape(scope)} at {output.when(report.checked_at)}"
    )]
    parts.extend(
        Text.from_markup(f"  {_verdict(r.verdict)} {escape(output.screen_times(r.message))}")
        for r in report.reasons
    )
    if not report.reasons:
        parts.append(Text("  nothing stuck, overdue, dying or failing above the thresholds"))
    listed = list(report.by_type)
    if len(listed) != 1:
        listed.append(report.overall)
    window = format_duration(report.rules.rate_window_seconds)
    dead_window = format_duration(report.rules.dead_window_seconds)
    parts.append(_table(["type", "verdict", *(s.value for s in State), "total"], [
        [_label(f), _verdict(f.verdict), *(str(f.counts.get(s.value, 0)) for s in State), str(f.total_events)]
        for f in listed
    ]))
    parts.append(_table(
        ["type", f"attempts\n{window}", "failed", "due", "overdue", "stuck", f"died\n{dead_window}",
         "oldest\nopen", "clusters"],
        [_activity(f) for f in listed],
    ))
    overall = report.overall
    if overall.oldest_unresolved is not None:
        parts.append(Text.from_markup(f"oldest unresolved: {_describe(overall.oldest_unresolved)}, "
                                      f"detected {_age(overall.oldest_unresolved)} ago"))
    if overall.most_retried is not None:
        parts.append(Text.from_markup(f"most retried (unresolved): {_describe(overall.most_retried)} "
                                      f"after {_attempts(overall.most_retried.attempt_count)}"))
    for cluster in overall.active_clusters:
        parts.append(Text.from_markup(
            f"active cluster {escape(cluster.id)}: {escape(cluster.event_type)}, {cluster.failure_count} "
            f"failures of {cluster.event_count} events, {output.when(cluster.window_start)} to "
            f"{output.when(cluster.window_end)}"
        ))
    for found in report.active_incidents:
        parts.append(Text.from_markup(
            f"active incident {escape(found.id)}: {found.cluster_count} clusters of "
            f"{escape(', '.join(found.event_types))} from {output.when(found.start)} to "
            f"{output.when(found.end)}"
        ))
    return Group(*parts)  # type: ignore[arg-type]


def _table(columns: list[str], rows: list[list[str]]) -> Table:
    """A compact table (no vertical rules) so the report fits an 80-column terminal."""
    out = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True)
    for number, column in enumerate(columns):
        if number == 0:
            out.add_column(column, overflow="fold", min_width=12)
        else:
            out.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        out.add_row(*row)
    return out


def _label(figures: HealthFigures) -> str:
    return escape(figures.event_type) if figures.event_type else "[bold]all types[/]"


def _activity(figures: HealthFigures) -> list[str]:
    rate = "-" if figures.failure_rate is None else f"{figures.failure_rate:.1%}"
    oldest = figures.oldest_unresolved
    return [
        _label(figures), str(figures.attempts), rate, str(figures.due), str(figures.overdue_retries),
        str(figures.stuck_claims), str(figures.dead_recent), "-" if oldest is None else _age(oldest),
        str(len(figures.active_clusters)),
    ]


def _verdict(verdict: Verdict) -> str:
    return f"[{VERDICT_STYLES[verdict]}]{verdict}[/]"


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _describe(mark: EventMark) -> str:
    return f"event {mark.event_id} ({escape(mark.event_type)}, {output.state_text(mark.state)})"


def _age(mark: EventMark) -> str:
    return format_duration(max(0, round(mark.age_seconds or 0.0)))  # whole seconds: an age, not a timing
