"""Tables for people and for scripts: ids, types and times are never broken, prose gives way.

Rich's own tables fit a width by folding or cutting any column, so at 80 columns (what a pipe gets) an id
came out as ``c_5edff│7e05d84│47a7`` and a type as ``payment.w│ebhook``: unreadable, and wrong when copied.
A ``DataTable`` knows which columns are *prose* (messages, notes, reasons, keys): those are shortened with an
ellipsis to fit, one line per row. Every other column is *whole*: always as wide as its widest cell. When
the whole columns alone are wider than the screen, the table is printed wider than the screen (a terminal
wraps the line, a pipe gets it intact) rather than cutting a value.

``--format`` (``table``, the default; ``plain``: aligned columns without borders or shortening; ``tsv``:
tab-separated with a header line, for scripts) is read from the click context, so every command that prints
a table takes it without a parameter of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "plain", "tsv")
FORMAT_KEY = "failure_aware.format"

# Column headers whose cells are prose: shortened with an ellipsis when the table must fit.
PROSE_COLUMNS = frozenset({
    "error", "last error", "top error", "example", "note", "notes", "reason", "key", "message", "problem",
})
_MIN_PROSE_WIDTH = 12
_BORDER = 1  # a vertical border line per column, plus one
_PADDING = 2  # one space each side of a cell


def current_format() -> str:
    """The ``--format`` of the running command (``table`` outside a command)."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        chosen = ctx.meta.get(FORMAT_KEY)
        if chosen:
            return str(chosen)
        ctx = ctx.parent
    return "table"


def _remember_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[FORMAT_KEY] = value


def format_option(func: Any) -> Any:
    """Add ``--format table|plain|tsv`` to a command (stored in the context, not passed to the function)."""
    return click.option(
        "--format", "table_format", type=click.Choice(FORMATS), expose_value=False, is_eager=True,
        callback=_remember_format,
        help="How tables print: table (default), plain (aligned, no borders, nothing cut) or tsv.",
    )(func)


def as_text(cell: Any) -> Text:
    """A cell as rich ``Text``: ``Text`` as it is, anything else as literal text (never markup)."""
    if isinstance(cell, Text):
        return cell
    return Text("-" if cell is None else str(cell))


class DataTable:
    """A table that renders by ``--format``; see the module docstring. Cells are ``Text`` or values."""

    def __init__(self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows = [[as_text(cell) for cell in row] for row in rows]

    def _widths(self) -> list[int]:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], max((len(line) for line in cell.plain.split("\n")), default=0))
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        chosen = current_format()
        if chosen == "tsv":
            yield from self._tsv()
        elif chosen == "plain":
            yield from self._plain()
        else:
            yield from self._boxed(console, options)

    def _tsv(self) -> RenderResult:
        def field(text: str) -> str:
            return " ".join(text.split("\t")).replace("\n", " ")

        # Segments, not Text: rich would expand the tabs of a Text into spaces.
        yield Segment("\t".join(field(c) for c in self.columns))
        yield Segment.line()
        for row in self.rows:
            yield Segment("\t".join(field(cell.plain) for cell in row))
            yield Segment.line()

    def _plain(self) -> RenderResult:
        widths = self._widths()
        if self.title:
            yield Text(self.title, style="bold")
        yield Text("  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip(),
                   style="bold", no_wrap=True)
        for row in self.rows:
            line = Text(no_wrap=True)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
                flat = Text(" ".join(cell.plain.split("\n")), style=cell.style, spans=cell.spans)
                line.append_text(flat)
                if i < len(widths) - 1:
                    line.append(" " * (width - len(flat.plain) + 2))
            line.rstrip()
            yield line

    def _boxed(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self._widths()
        prose = [i for i, c in enumerate(self.columns) if c in PROSE_COLUMNS]
        overhead = _BORDER + len(widths) * (_BORDER + _PADDING)
        whole = sum(w for i, w in enumerate(widths) if i not in prose)
        room = options.max_width - overhead - whole
        need = sum(widths[i] for i in prose)
        if prose and need > room:
            # Share the room among the prose columns, the narrow ones keeping their width.
            share = max(_MIN_PROSE_WIDTH, room // len(prose))
            for i in sorted(prose, key=lambda i: widths[i]):
                widths[i] = min(widths[i], share)
                prose_left = [j for j in prose if widths[j] > share]
                room -= widths[i]
                if prose_left:
                    share = max(_MIN_PROSE_WIDTH, room // len(prose_left))
        table = Table(title=self.title, title_justify="left", header_style="bold")
        for i, column in enumerate(self.columns):
            table.add_column(column, no_wrap=True, overflow="ellipsis", width=widths[i],
                             min_width=widths[i])
        for row in self.rows:
            table.add_row(*row)
        total = overhead + sum(widths)
        if total > options.max_width:  # the whole columns alone do not fit: print wider, never cut a value
            options = options.update(width=total)
        yield from console.render(table, options)


__all__ = ["FORMATS", "DataTable", "as_text", "current_format", "format_option"]
