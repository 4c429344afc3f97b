"""Commands: ``correlate`` (the only writer of clusters) and ``clusters`` (reads only)."""

from __future__ import annotations

from datetime import datetime

import click
from rich.console import Group, RenderableType
from rich.text import Text

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.params import COUNT, POSITIVE_DURATION, SINCE
from failure_aware.cli.progress import Progress
from failure_aware.domain.cluster_records import Cluster, ClusterDetail, Timeline
from failure_aware.domain.durations import format_duration
from failure_aware.domain.validation import MAX_INT

BARS = " ▁▂▃▄▅▆▇█"


@cli.command()
@click.option("--window", type=POSITIVE_DURATION,
              help="W: failures this close together form a burst (default 10m).")
@click.option("--min-failures", type=click.IntRange(min=2, max=MAX_INT),
              help="N: failures needed in one window (default 3).")
@click.option("--min-events", type=COUNT, help="E: distinct events needed (default 2).")
@click.option("--rebuild", is_flag=True,
              help="Delete every cluster and recompute (needed to change the rule).")
@output.json_option
def correlate(window: float | None, min_failures: int | None, min_events: int | None, rebuild: bool,
              as_json: bool) -> None:
    """Compute failure clusters from history: incremental unless --rebuild."""
    with Progress() as progress:
        report = app().ledger().correlate(
            rebuild=rebuild, window=window, min_failures=min_failures, min_events=min_events,
            on_progress=progress,
        )
    if as_json:
        output.print_json(report.as_dict())
        return
    output.say(
        f"correlate ({report.mode}, window {format_duration(report.window_seconds)}, "
        f"min {report.min_failures} failures, min {report.min_events} events): read {report.failures_read} "
        f"failure(s); clusters +{report.added} -{report.removed} ~{report.changed}, {report.unchanged} "
        f"unchanged; {report.clusters_total} stored; incidents +{report.incidents_added} "
        f"-{report.incidents_removed} ~{report.incidents_changed}"
    )


@cli.group(invoke_without_command=True)
@click.option("--type", "event_type", help="Only clusters of this event type.")
@click.option("--active", is_flag=True, help="Only active clusters (ended within the window of now).")
@click.option("--since", type=SINCE, help="Only clusters that ended at or after TIME (or e.g. 24h ago).")
@click.option("--limit", type=click.IntRange(min=1, max=2**63 - 1),
              help="At most N clusters, the newest first.")
@click.option("--timeline", is_flag=True, help="Draw failures per time bucket per type, clusters marked.")
@click.option("--buckets", type=click.IntRange(min=5, max=400), default=60, show_default=True,
              help="Number of time buckets of the timeline.")
@output.json_option
@click.pass_context
def clusters(ctx: click.Context, event_type: str | None, active: bool, since: datetime | None,
             limit: int | None, timeline: bool, buckets: int, as_json: bool) -> None:
    """List failure clusters (reads only; run `correlate` to bring them up to date)."""
    if ctx.invoked_subcommand is not None:
        return
    ledger = app().ledger(readonly=True, missing_is_empty=True)
    if timeline:
        drawn = ledger.timeline(event_type=event_type, buckets=buckets, since=since)
        if as_json:
            output.print_json(drawn.as_dict())
        else:
            output.console().print(render_timeline(drawn))
        return
    found = ledger.clusters(event_type=event_type, active=active, since=since, limit=limit)
    if as_json:
        output.print_json([c.as_dict() for c in found])
        return
    if not found:
        output.say("no clusters (run `failure-aware correlate` to compute them from history)")
        return
    rows = [
        (c.id, c.event_type, output.when(c.window_start), output.when(c.window_end), c.failure_count,
         c.event_count, "[bold red]active[/]" if c.active else "-", top_fingerprint_cell(c))
        for c in found
    ]
    output.console().print(
        output.table(None, ["id", "type", "from", "to", "failures", "events", "active", "top error"], rows)
    )


@clusters.command("show")
@click.argument("cluster_id")
@output.json_option
def show_cluster(cluster_id: str, as_json: bool) -> None:
    """One cluster: the rule that fired, its window, member events and their errors, annotations."""
    detail = app().ledger(readonly=True).cluster(cluster_id)
    if as_json:
        output.print_json(detail.as_dict())
    else:
        output.console().print(render_cluster(detail))


def render_cluster(detail: ClusterDetail, *, max_attempts: int | None = None) -> Group:
    """The rich rendering of ``clusters show`` (at most ``max_attempts`` failed attempts listed)."""
    shown = detail.attempts if max_attempts is None else detail.attempts[:max_attempts]
    cut = detail.attempts_truncated or len(shown) < len(detail.attempts)
    c = detail.cluster
    parts: list[RenderableType] = [
        Text.from_markup(
            f"[bold]cluster {c.id}[/] {output.plain(c.event_type)}  {output.when(c.window_start)} -> "
            f"{output.when(c.window_end)}  {c.failure_count} failures of {c.event_count} events"
            + ("  [bold red]active[/]" if c.active else "")
        ),
        Text(f"rule: {detail.rule}"),
    ]
    if c.top_fingerprints:
        parts.append(output.table(
            "top errors", ["fingerprint", "count", "example"],
            [(f.fingerprint or "-", f.count, output.short(f.example, 70)) for f in c.top_fingerprints],
        ))
    parts.append(output.table(
        "events", ["event", "key", "state", "failures in window"],
        [(e.event_id, output.short(e.key, 30), output.state_text(e.state), e.failures)
         for e in detail.events],
    ))
    parts.append(output.table(
        "failed attempts" + (f" (first {len(shown)} of {c.failure_count})" if cut else ""),
        ["event", "#", "at", "error type", "error"],
        [(a.event_id, a.number, output.when(a.at), output.short(a.error_type, 40), output.short(a.error, 50))
         for a in shown],
    ))
    if detail.annotations:
        parts.append(output.table(
            "annotations", ["at", "author", "note"],
            [(output.when(n.at), output.plain(n.author), output.plain(n.text)) for n in detail.annotations],
        ))
    return Group(*parts)


def render_timeline(drawn: Timeline) -> Group:
    """Failures per bucket as a bar per type; the line under it marks cluster spans with ━."""
    if drawn.start is None or drawn.end is None or not drawn.rows:
        return Group(Text("no failures recorded"))
    peak = max((max(row.counts) for row in drawn.rows if row.counts), default=0) or 1
    width = max(len(row.event_type) for row in drawn.rows)
    start_s = drawn.start.timestamp()
    parts: list[RenderableType] = [Text(
        f"{output.when(drawn.start)} .. {output.when(drawn.end)}, one column = "
        f"{format_duration(drawn.bucket_seconds)}, tallest bar = {peak} failures"
    )]
    for row in drawn.rows:
        bars = "".join(BARS[0 if n == 0 else max(1, round(n / peak * (len(BARS) - 1)))] for n in row.counts)
        parts.append(Text.assemble((row.event_type.rjust(width), "bold"), " │", (bars, "yellow"), "│"))
        marks = [" "] * len(row.counts)
        for cluster in row.clusters:
            first = int((cluster.window_start.timestamp() - start_s) // drawn.bucket_seconds)
            last = int((cluster.window_end.timestamp() - start_s) // drawn.bucket_seconds)
            for i in range(max(first, 0), min(last, len(marks) - 1) + 1):
                marks[i] = "━"
        if row.clusters:
            parts.append(Text.assemble(" " * width, " │", ("".join(marks), "bold red"), "│ clusters"))
    return Group(*parts)


def top_fingerprint_cell(cluster: Cluster) -> str:
    if not cluster.top_fingerprints:
        return "-"
    top = cluster.top_fingerprints[0]
    return f"{top.count} x {output.short(top.example, 40)}"
