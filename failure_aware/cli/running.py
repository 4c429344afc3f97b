"""Commands that run work: run, retry --due, worker, recover.

Nothing runs unless one of these is invoked, and only while it runs: `run` makes one attempt, `retry --due`
runs what is due now and exits, `worker` is the same as a foreground loop you stop with Ctrl-C (the first
finishes the attempts in hand, a second exits at once). The handler is ``module:function``, imported with
the working directory on the path. Every command exits 0 when outcomes were recorded, whatever they were:
a failed attempt is data, printed and in ``--json``, not an error of the command.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import click
from rich.console import Console
from rich.markup import escape

from failure_aware.cli import output
from failure_aware.cli.app import cli
from failure_aware.cli.context import app
from failure_aware.cli.handlers import load_handler
from failure_aware.cli.params import COUNT, HANDLER, POSITIVE_DURATION
from failure_aware.domain.durations import format_duration
from failure_aware.domain.records import AttemptResult, Event
from failure_aware.events.claims import DEFAULT_LEASE_SECONDS
from failure_aware.storage.dbwait import DEFAULT_MAX_DB_WAIT_SECONDS
from failure_aware.worker import AttemptReport, Worker, WorkerSummary

HANDLER_HELP = "The handler, module:function (e.g. myapp.handlers:deliver); it gets the event."
MAX_DB_WAIT = click.option(
    "--max-db-wait", type=POSITIVE_DURATION, default=DEFAULT_MAX_DB_WAIT_SECONDS, show_default="5m",
    help="How long the database may stay unreachable (reconnecting with backoff, holding the outcomes in "
         "hand) before giving up with exit 1.",
)


@cli.command()
@click.argument("event_id", type=int)
@click.option("--handler", "handler_spec", required=True, type=HANDLER, help=HANDLER_HELP)
@click.option("--force", is_flag=True,
              help="Run a FAILED event even before its next_retry_at (recorded as forced).")
@click.option("--lease", "lease_seconds", type=POSITIVE_DURATION, default=DEFAULT_LEASE_SECONDS,
              show_default="5m",
              help="How long the attempt may take before `recover` may close it.")
@output.json_option
def run(event_id: int, handler_spec: str, force: bool, lease_seconds: float, as_json: bool) -> None:
    """Make one attempt at an event now: claim it, call the handler, record the outcome."""
    handler = load_handler(handler_spec, app().config())
    result = app().ledger().run(event_id, handler, force=force, lease_seconds=lease_seconds)
    if as_json:
        output.print_json(result.as_dict())
    else:
        output.say(_result_line(result, None))


@cli.command()
@click.option("--due", is_flag=True, help="Run the events due now (required: nothing else is retried).")
@click.option("--handler", "handler_spec", type=HANDLER, help=HANDLER_HELP)
@click.option("--type", "event_type", help="Only events of this type.")
@click.option("--limit", type=COUNT, help="Run at most N events.")
@click.option("--dry-run", is_flag=True, help="List what is due, claim and run nothing, write nothing.")
@click.option("--lease", "lease_seconds", type=POSITIVE_DURATION, default=DEFAULT_LEASE_SECONDS,
              show_default="5m",
              help="How long each attempt may take before `recover` may close it.")
@MAX_DB_WAIT
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@output.json_option
def retry(*, due: bool, handler_spec: str | None, event_type: str | None, limit: int | None, dry_run: bool,
          lease_seconds: float, max_db_wait: float, quiet: bool, as_json: bool) -> None:
    """Run the events due now (PENDING, or FAILED past next_retry_at), print each outcome, then exit."""
    if not due:
        raise click.UsageError(
            "retry runs only the events that are due now: say so with --due (to try one event regardless of "
            "its next_retry_at, use `run ID --force`)"
        )
    if dry_run:
        if handler_spec is not None:
            load_handler(handler_spec, app().config())  # a dry run still checks the handler and its config
        _list_due(event_type, limit, as_json)
        return
    if handler_spec is None:
        raise click.UsageError("say which handler runs the events: --handler module:function")
    handler = load_handler(handler_spec, app().config())
    worker = Worker(app().ledger(), handler, event_type=event_type, limit=limit, lease_seconds=lease_seconds,
                    max_db_wait_seconds=max_db_wait)
    _run_worker(worker, once=True, quiet=quiet, as_json=as_json)


@cli.command()
@click.option("--handler", "handler_spec", required=True, type=HANDLER, help=HANDLER_HELP)
@click.option("--type", "event_type", help="Only events of this type.")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Loops (threads) in this process; for I/O-bound handlers. Start more processes to scale.")
@click.option("--once", is_flag=True, help="Run what is due now, then exit (like `retry --due`).")
@click.option("--lease", "lease_seconds", type=POSITIVE_DURATION, default=DEFAULT_LEASE_SECONDS,
              show_default="5m",
              help="How long each attempt may take before `recover` may close it.")
@click.option("--poll", "poll_seconds", type=POSITIVE_DURATION, default=1.0, show_default="1s",
              help="How often to look for due events when there are none.")
@click.option("--limit", type=COUNT, help="Exit after N attempts.")
@MAX_DB_WAIT
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@output.json_option
def worker(*, handler_spec: str, event_type: str | None, concurrency: int, once: bool, lease_seconds: float,
           poll_seconds: float, limit: int | None, max_db_wait: float, quiet: bool, as_json: bool) -> None:
    """Run due events in the foreground until Ctrl-C (first: finish the attempts in hand; second: exit)."""
    handler = load_handler(handler_spec, app().config())
    runner = Worker(app().ledger(), handler, event_type=event_type, concurrency=concurrency, limit=limit,
                    lease_seconds=lease_seconds, idle_sleep_seconds=poll_seconds,
                    max_db_wait_seconds=max_db_wait)
    if not as_json and not quiet:
        mode = "what is due now" if once else "due events until Ctrl-C"
        output.say(f"worker {escape(runner.worker_id)}: running {mode} with {escape(handler_spec)} "
                   f"(concurrency {concurrency}, lease {format_duration(lease_seconds)})")
    _run_worker(runner, once=once, quiet=quiet, as_json=as_json)


@cli.command()
@click.option("--dry-run", is_flag=True, help="List the expired claims, change nothing.")
@output.json_option
def recover(dry_run: bool, as_json: bool) -> None:
    """Close claims whose lease expired: each gets an `abandoned` attempt (the event is FAILED or DEAD)."""
    if dry_run:
        events = app().ledger(readonly=True).recover(dry_run=True)
        if as_json:
            output.print_json([e.as_dict() for e in events if isinstance(e, Event)])
            return
        rows = [(e.id, e.event_type, output.short(e.claimed_by, 40), output.when(e.lease_expires_at),
                 e.attempt_count + 1) for e in events if isinstance(e, Event)]
        out = output.console()
        out.print(output.table(None, ["id", "type", "claimed by", "lease expired", "attempt"], rows))
        out.print(f"{len(rows)} expired claim(s) would be closed as abandoned attempts "
                  "(dry run: nothing written)")
        return
    results = [r for r in app().ledger().recover() if isinstance(r, AttemptResult)]
    if as_json:
        output.print_json([r.as_dict() for r in results])
        return
    out = output.console()
    for result in results:
        out.print(_result_line(result, None))
    out.print(f"recovered {len(results)} expired claim(s)")


# -- shared ------------------------------------------------------------------------------------------------
def _list_due(event_type: str | None, limit: int | None, as_json: bool) -> None:
    shown = limit or 100
    events = app().ledger(readonly=True).due(event_type=event_type, limit=shown)
    if as_json:
        output.print_json([e.as_dict() for e in events])
        return
    rows = [(e.id, e.event_type, output.short(e.key, 24), output.state_text(e.state), e.attempt_count,
             output.when(e.next_retry_at), output.short(e.last_error, 40)) for e in events]
    out = output.console()
    out.print(output.table(None, ["id", "type", "key", "state", "tries", "retry from", "last error"], rows))
    more = " (the first ones; use --limit for more)" if len(events) == shown and limit is None else ""
    out.print(f"{len(events)} event(s) due now{more} (dry run: nothing claimed or written)")


def _run_worker(runner: Worker, *, once: bool, quiet: bool, as_json: bool) -> None:
    out = Console(stderr=as_json, highlight=False, soft_wrap=True)  # one console: printing is in the hot path

    def on_result(report: AttemptReport) -> None:
        if quiet:
            return
        if as_json:
            click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            out.print(_report_line(report))

    def on_idle() -> None:
        if not quiet and not as_json:
            out.print(f"[dim]nothing due; looking again every {format_duration(runner.idle_sleep_seconds)} "
                      "(Ctrl-C to stop)[/]")

    def on_first_signal() -> None:
        out.print("stopping: finishing the attempt(s) in hand, then exiting (Ctrl-C again to exit at once; "
                  "an unfinished claim then waits for its lease to expire and `recover`)")

    def on_db_fault(message: str) -> None:
        click.echo(f"worker {runner.worker_id}: {output.screen_times(message)}", err=True)

    try:
        with _stop_on_signals(runner, on_first_signal):
            runner.run(once=once, on_result=on_result, on_idle=on_idle, on_db_fault=on_db_fault)
    except KeyboardInterrupt:
        out.print("exited at once: an attempt in hand stays IN_FLIGHT until its lease expires; then run "
                  "`failure-aware recover`")
        raise
    finally:  # every exit prints the summary: the --json stream always ends with it
        summary = runner.summary
        if as_json:
            click.echo(json.dumps(summary.as_dict()))
        else:
            out.print(_summary_line(summary))


@contextmanager
def _stop_on_signals(runner: Worker, announce: Callable[[], None]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ``runner.stop()``; a second: ``KeyboardInterrupt`` (exit at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread; a caller elsewhere stops the worker itself
        return

    def handle(_signum: int, _frame: FrameType | None) -> None:
        if runner.stopping:
            raise KeyboardInterrupt
        runner.stop()
        announce()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _result_line(result: AttemptResult, event_type: str | None) -> str:
    attempt = result.attempt
    head = f"event {result.event_id}" + (f" {event_type}" if event_type else "")
    line = f"{head}: attempt {attempt.number} {attempt.outcome} -> {output.state_text(result.state)}"
    if result.next_retry_at is not None:
        line += f", retry from {output.when(result.next_retry_at)}"
    if attempt.error_type or attempt.error:
        line += f"  {escape(attempt.error_type or '')}: {output.short(attempt.error, 80)}"
    return line


def _report_line(report: AttemptReport) -> str:
    if report.result is not None:
        return _result_line(report.result, report.claim.event.event_type)
    event = report.claim.event
    return (f"event {event.id} {event.event_type}: attempt {report.claim.attempt_number} "
            f"[yellow]{report.outcome}[/]: {escape(output.screen_times(report.problem or ''))}")


def _summary_line(summary: WorkerSummary) -> str:
    parts = [f"{summary.attempts} attempt(s) in {summary.elapsed_seconds:.1f}s: "
             f"{summary.succeeded} succeeded, {summary.failed} failed (to retry), {summary.dead} dead"]
    if summary.lost:
        parts.append(f"{summary.lost} lost (claim expired and recovered; outcome not recorded)")
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped (lease expired before start; run `recover`)")
    if summary.unrecorded:
        parts.append(f"{summary.unrecorded} not recorded (the database stayed unreachable; their claims "
                     "expire and `recover` closes them)")
    if summary.stopped:
        parts.append("stopped on request")
    return "; ".join(parts)
