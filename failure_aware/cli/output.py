"""Output: JSON on stdout with ``--json`` (nothing else there), rich tables otherwise.

Messages for people (progress, summaries of writes) go to stderr when ``--json`` is on, so stdout stays
parseable. Text that came from outside (keys, payloads, error messages, notes) is shown inert (SPEC 3):
control characters (ESC and the other C0 and C1 codes but newline and tab) are shown escaped (``\x1b``),
never sent to the terminal; JSON escapes them as ``\u001b``. What is stored is unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from failure_aware.cli.tables import DataTable, format_option
from failure_aware.domain.timeutil import format_time

F = TypeVar("F", bound=Callable[..., Any])

STATE_STYLES = {
    "PENDING": "cyan",
    "IN_FLIGHT": "blue",
    "SUCCEEDED": "green",
    "FAILED": "yellow",
    "DEAD": "bold red",
}


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C1 = re.compile("[\x7f-\x9f]")  # json.dumps(ensure_ascii=False) escapes C0 itself, not these


def visible(text: str) -> str:
    """``text`` with control characters (but newline and tab) shown as escapes: ``\x1b[31m`` is printed
    as those characters, not obeyed by the terminal."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def plain(text: object) -> str:
    """Outside text for rich markup: control characters escaped (``visible``), markup escaped."""
    return escape(visible(str(text)))


def _json_text(data: Any) -> str:
    return _C1.sub(lambda found: f"\\u{ord(found.group()):04x}", json.dumps(data, ensure_ascii=False,
                                                                              default=str))


def json_option(func: F) -> F:
    """Add ``--json`` (and ``--format`` for its tables, see ``tables``) to a command."""
    flag = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
    return flag(format_option(func))  # type: ignore[no-any-return]


def console(*, err: bool = False) -> Console:
    """A rich console on stdout (or stderr); plain when not a terminal."""
    # soft_wrap: messages are not broken at 80 columns when piped (scripts grep them); tables still fit.
    return Console(stderr=err, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    click.echo(_json_text(data))


def print_json_lines(items: Iterable[Any]) -> None:
    """One JSON document per line on stdout."""
    for item in items:
        click.echo(_json_text(item))


def say(message: str, *, as_json: bool = False) -> None:
    """A human message: stdout normally, stderr when stdout carries JSON."""
    console(err=as_json).print(message)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> DataTable:
    """A table with the given column headers: ids, types and times whole, prose cut to fit (``tables``).

    A ``str`` cell is rich markup (callers escape what came from outside: ``short``, ``literal``); other
    values print as they are (times as ``when`` does).
    """
    return DataTable(title, columns, ([_cell(cell) for cell in row] for row in rows))




def state_text(state: str) -> str:
    """A state, coloured."""
    style = STATE_STYLES.get(str(state), "")
    return f"[{style}]{state}[/]" if style else str(state)


def when(moment: datetime | None) -> str:
    """A time on the screen: ``2026-01-02 04:45:54Z`` (UTC, to the second), or a dash.

    The one format of every time the terminal shows: tables, ``show``, health, clusters, incidents, the
    demo, and (through ``screen_times``) the times inside reasons, problems and error messages. ``--json``
    keeps RFC 3339 with microseconds (SPEC 2).
    """
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime(SCREEN_TIME)


SCREEN_TIME = "%Y-%m-%d %H:%M:%SZ"
SCREEN_TIME_PRECISE = "%Y-%m-%d %H:%M:%S.%fZ"  # when seconds would hide a difference
# An RFC 3339 time as the library writes it into text (``format_time``: ``2026-01-02T04:45:54.971227Z``),
# or with an offset.
_RFC3339 = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def screen_times(text: str) -> str:
    """``text`` (a transition reason, a health reason, a problem, an error message) with each RFC 3339 time
    in it shown as ``when`` shows times, so a reason and the table above it agree.

    Should two different times in the text fall in the same second ("may be retried from 04:46:15Z;
    04:46:15Z is too early"), the seconds would hide the very difference the text is about: all its times
    are then shown to the microsecond."""
    moments: dict[str, datetime] = {}
    for raw in _RFC3339.findall(text):
        try:
            moments[raw] = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
        except (ValueError, OverflowError):
            continue
    shown = {raw: when(moment) for raw, moment in moments.items()}
    if len(set(shown.values())) < len(set(moments.values())):
        shown = {raw: moment.astimezone(UTC).strftime(SCREEN_TIME_PRECISE) for raw, moment in moments.items()}
    return _RFC3339.sub(lambda found: shown.get(found.group(), found.group()), text)


def short(text: str | None, width: int = 60) -> str:
    """Text cut to ``width`` characters with an ellipsis, escaped for rich markup (it is often user text,
    like ``[Errno 111] refused``, that rich would otherwise read as a style or fail on)."""
    if not text:
        return "-"
    flat = " ".join(visible(text).split())
    return escape(flat if len(flat) <= width else flat[: width - 1] + "…")


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    if isinstance(value, str):
        return Text.from_markup(value)
    if value is None:
        return Text("-")
    if isinstance(value, datetime):
        return Text(when(value))
    return Text(visible(str(value)))


__all__ = ["format_time", "json_option", "plain", "print_json", "say", "table"]
