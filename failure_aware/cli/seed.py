"""``python cli.py``: the seed's command line, kept working from the repository root.

Inspection flags (``--status``, ``--recent``, ``--health``, ``--clusters``) open the database read-only and
never create it; ``--annotate`` adds a note. The full command line is ``failure-aware``
(``python -m failure_aware``); this one keeps the seed's flags for the scripts and habits that use them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from failure_aware.cli import output
from failure_aware.cli.app import EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED
from failure_aware.domain.errors import FailureAwareError, ValidationError
from failure_aware.ledger import Ledger

EXIT_HEALTH_UNKNOWN = 3  # as `failure-aware health`: the verdict could not be computed

EPILOG = """\
These are the seed's flags, kept for scripts. Everything else (detect, report, run, retry, worker,
revive, bury, import, export, correlate, verify, db upgrade, ...) is in the full command line:
  failure-aware --help        (or: python -m failure_aware --help)

exit codes: 0 ok; 1 an error (unknown event, bad database, ...); 2 a usage error;
with --health: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 health could not be checked (an error).
The database is --db URL, else $FAILURE_AWARE_DB, else sqlite:///failure-aware.db in this directory.
"""


def build_parser() -> argparse.ArgumentParser:
    """The seed's flags: exactly one action, plus ``--db`` and ``--json``."""
    parser = argparse.ArgumentParser(
        prog="python cli.py",
        description="failure-aware, the seed's interface: see what is failing and whether it is failing\n"
                    "repeatedly. The inspection flags only read the database (and never create it).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--status", action="store_true", help="count events by state (reads only)")
    action.add_argument("--recent", type=_positive_int, metavar="N",
                        help="the last N events: state, tries, last error, notes (reads only)")
    action.add_argument("--health", action="store_true",
                        help="health verdict and its reasons; exit code 0 OK, 1 DEGRADED, 2 CRITICAL "
                             "(reads only)")
    action.add_argument("--clusters", action="store_true",
                        help="failure clusters as the last `failure-aware correlate` left them (reads only)")
    action.add_argument("--annotate", nargs=2, metavar=("EVENT_ID", "NOTE"),
                        help="add a note to an event, written by the OS user (the only flag that writes)")
    parser.add_argument("--db", metavar="URL", help="database URL (sqlite:///path.db or postgresql://...)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the seed interface; returns the exit code (usage errors exit 2 from argparse)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    event_id: int | None = None
    if args.annotate:
        try:
            event_id = int(args.annotate[0])
        except ValueError:
            parser.error(f"--annotate: EVENT_ID must be a whole number, got {args.annotate[0]!r}")
    try:
        return _run(args, event_id)
    except FailureAwareError as error:
        print(f"error ({type(error).__name__}): {output.visible(str(error))}", file=sys.stderr)
        # With --health, 1 and 2 are verdicts: an error must not read as DEGRADED.
        return EXIT_HEALTH_UNKNOWN if args.health else EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as bug:  # a bug of ours: say so plainly, traceback only on request
        if os.environ.get("FAILURE_AWARE_DEBUG"):
            raise
        print(f"internal error: {type(bug).__name__}: {bug}\n"
              "(this is a bug in failure-aware; set FAILURE_AWARE_DEBUG=1 to see the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _run(args: argparse.Namespace, event_id: int | None) -> int:
    if event_id is not None:
        with Ledger(args.db) as ledger:
            note = ledger.annotate(event_id, args.annotate[1])
        if args.json:
            output.print_json(note.as_dict())
        else:
            output.say(f"note {note.id} added to event {event_id} by {output.plain(note.author)}")
        return 0
    with Ledger(args.db, readonly=True) as ledger:
        if args.status:
            _status(ledger, args.json)
        elif args.recent:
            _recent(ledger, args.recent, args.json)
        elif args.health:
            return _health(ledger, args.json)
        else:
            _clusters(ledger, args.json)
    return 0


def _status(ledger: Ledger, as_json: bool) -> None:
    counts = ledger.state_counts()
    if as_json:
        output.print_json({"total": sum(counts.values()), "by_state": {str(s): n for s, n in counts.items()}})
        return
    rows = [(output.state_text(state), n) for state, n in counts.items()]
    rows.append(("[bold]total[/]", sum(counts.values())))
    output.console().print(output.table(None, ["state", "events"], rows))


def _recent(ledger: Ledger, limit: int, as_json: bool) -> None:
    if limit > 1000:
        raise ValidationError(f"--recent: at most 1000 events at a time, got {limit}")
    details = [ledger.show(event.id) for event in ledger.events(limit=limit)]
    if as_json:
        items: list[dict[str, Any]] = []
        for detail in details:
            item = detail.event.as_dict()
            item["annotation_count"] = len(detail.annotations)
            item["latest_note"] = detail.annotations[-1].as_dict() if detail.annotations else None
            items.append(item)
        output.print_json(items)
        return
    rows = [
        (d.event.id, d.event.event_type, output.state_text(d.event.state), d.event.attempt_count,
         output.when(d.event.detected_at), output.short(d.event.last_error, 40),
         _notes_cell(d.annotations))
        for d in details
    ]
    output.console().print(output.table(None, ["id", "type", "state", "tries", "detected", "last error",
                                               "notes"], rows))


def _notes_cell(notes: Sequence[Any]) -> str:
    if not notes:
        return "-"
    latest = notes[-1]
    more = f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""
    return f"{output.plain(latest.author)}: {output.short(latest.text, 40)}{more}"


def _health(ledger: Ledger, as_json: bool) -> int:
    from failure_aware.cli.health import render_health  # the same rendering as `failure-aware health`

    report = ledger.health()
    if as_json:
        output.print_json(report.as_dict())
    else:
        output.console().print(render_health(report))
    return report.exit_code


def _clusters(ledger: Ledger, as_json: bool) -> None:
    found = ledger.clusters()
    if as_json:
        output.print_json([cluster.as_dict() for cluster in found])
        return
    if not found:
        output.say("no clusters (they are computed by `failure-aware correlate`)")
        return
    rows = [
        (c.id, c.event_type, output.when(c.window_start), output.when(c.window_end), c.failure_count,
         c.event_count, "[bold red]active[/]" if c.active else "-",
         output.short(c.top_fingerprints[0].example, 40) if c.top_fingerprints else "-")
        for c in found
    ]
    output.console().print(output.table(None, ["id", "type", "from", "to", "failures", "events", "active",
                                               "top error"], rows))


__all__ = ["build_parser", "main"]
