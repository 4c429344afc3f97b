"""Click parameter types for our values: times (RFC 3339 or "1h" ago), durations, states, JSON objects,
counts and handlers. A value of the wrong form is a usage error (exit 2), named by its option."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any

import click

from failure_aware.cli.handlers import handler_spec_ok
from failure_aware.domain.durations import parse_duration
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.timeutil import parse_time, utc_now
from failure_aware.domain.validation import MAX_INT, MAX_JSON_DEPTH


class TimeParam(click.ParamType[datetime]):
    """An RFC 3339 time with a zone (``2026-01-02T04:45:54Z``); with ``relative``, also ``1h`` = 1 h ago."""

    name = "TIME"

    def __init__(self, *, relative: bool = False) -> None:
        self.relative = relative

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value, field=param.name if param and param.name else "time")
        except ValidationError as error:
            if self.relative:
                try:
                    return utc_now() - timedelta(seconds=parse_duration(value))
                except ValidationError:
                    pass
                except OverflowError:  # a duration longer than the calendar (99999999999d)
                    self.fail(f"{value!r} ago is before 1970-01-01T00:00:00Z, the earliest time", param, ctx)
            self.fail(str(error) + (" or a duration ago such as 1h" if self.relative else ""), param, ctx)


MAX_DURATION_SECONDS = 100 * 365 * 86400.0  # a command-line duration past this is a typo


class DurationParam(click.ParamType[float]):
    """A duration: ``600``, ``10m``, ``1h30m``; converted to seconds (with ``positive``, more than 0)."""

    name = "DURATION"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = parse_duration(value)
        except ValidationError as error:
            self.fail(str(error), param, ctx)
        if self.positive and seconds <= 0:
            self.fail(f"{value!r}: must be more than 0", param, ctx)
        if seconds > MAX_DURATION_SECONDS:
            self.fail(f"{value!r}: longer than any duration this takes (100 years at most)", param, ctx)
        return seconds


class JsonObjectParam(click.ParamType[dict[str, Any]]):
    """A JSON object given on the command line, or read from a file (``@FILE``) or stdin (``-``)."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = value
        if value == "-":
            text = sys.stdin.read()
        elif isinstance(value, str) and value.startswith("@"):
            try:
                with open(value[1:], encoding="utf-8") as source:
                    text = source.read()
            except OSError as error:
                self.fail(f"cannot read {value[1:]!r}: {error.strerror or error}", param, ctx)
            except UnicodeDecodeError as error:
                self.fail(f"{value[1:]!r} is not UTF-8 text ({error.reason})", param, ctx)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            self.fail(f"not valid JSON ({error.msg} at position {error.pos})", param, ctx)
        except RecursionError:
            self.fail(f"nested more than {MAX_JSON_DEPTH} levels deep", param, ctx)
        if not isinstance(parsed, dict):
            kind = type(parsed).__name__
            self.fail(f"must be a JSON object like '{{\"amount\": 12}}', got {kind}", param, ctx)
        return parsed


class RetryAfterParam(click.ParamType[float | datetime]):
    """A failure's ``retry_after``: seconds or a duration (``120``, ``2m``), or an RFC 3339 time."""

    name = "SECONDS|TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | datetime:
        if isinstance(value, float | datetime):
            return value
        try:
            return parse_duration(value)
        except ValidationError:
            pass
        try:
            return parse_time(value, field="retry-after")
        except ValidationError:
            self.fail(f"{value!r} is neither seconds (120, 2m) nor an RFC 3339 time", param, ctx)


class HandlerParam(click.ParamType[str]):
    """A handler named ``module:function``: the form is checked here (exit 2); importing it is the
    command's (a module that cannot be imported is an error, exit 1)."""

    name = "MODULE:FUNCTION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not isinstance(value, str) or not handler_spec_ok(value):
            self.fail(f"{value!r} must be written module:function (e.g. myapp.handlers:deliver)", param, ctx)
        return value


STATE_CHOICE = click.Choice(["PENDING", "IN_FLIGHT", "SUCCEEDED", "FAILED", "DEAD"], case_sensitive=False)
TIME = TimeParam()
SINCE = TimeParam(relative=True)
DURATION = DurationParam()
POSITIVE_DURATION = DurationParam(positive=True)
JSON_OBJECT = JsonObjectParam()
HANDLER = HandlerParam()
#: A count or limit: 1 to 2**63 - 1 (the largest integer anything stores).
COUNT = click.IntRange(min=1, max=MAX_INT)
