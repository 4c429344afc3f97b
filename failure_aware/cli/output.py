"""Output: JSON on stdout with ``--json`` (nothing else there), rich tables otherwise.

Messages for people (progress, summaries of writes) go to stderr when ``--json`` is on, so stdout stays
parseable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..timeutil import format_time
from .tables import DataTable, format_option

F = TypeVar("F", bound=Callable[..., Any])

STATE_STYLES = {
    "PENDING": "cyan",
    "IN_FLIGHT": "blue",
    "SUCCEEDED": "green",
    "FAILED": "yellow",
    "DEAD": "bold red",
}


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
    click.echo(json.dumps(data, ensure_ascii=False, default=str))


def print_json_lines(items: Iterable[Any]) -> None:
    """One JSON document per line on stdout."""
    for item in items:
        click.echo(json.dumps(item, ensure_ascii=False, default=str))


def say(message: str, *, as_json: bool = False) -> None:
    """A human message: stdout normally, stderr when stdout carries JSON."""
    console(err=as_json).print(message)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> DataTable:
    """A table with the given column headers: ids, types and times whole, prose cut to fit (``tables``).

    A ``str`` cell is rich markup (callers escape what came from outside: ``short``, ``literal``); other
    values print as they are (times as ``when`` does).
    """
    return DataTable(title, columns, ([_cell(cell) for cell in row] for row in rows))


def literal(value: object) -> str:
    """A value from outside (a name, a reason, a note) made safe to put in markup: shown as typed."""
    return escape("-" if value is None else str(value))


def state_text(state: str) -> str:
    """A state, coloured."""
    style = STATE_STYLES.get(str(state), "")
    return f"[{style}]{state}[/]" if style else str(state)


def when(moment: datetime | None) -> str:
    """A time for a table: ``2026-01-02 04:45:54Z``, or a dash."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def short(text: str | None, width: int = 60) -> str:
    """Text cut to ``width`` characters with an ellipsis, escaped for rich markup (it is often user text,
    like ``[Errno 111] refused``, that rich would otherwise read as a style or fail on)."""
    if not text:
        return "-"
    flat = " ".join(text.split())
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
    return Text(str(value))


__all__ = ["format_time", "json_option", "literal", "print_json", "say", "table"]
