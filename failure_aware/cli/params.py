"""Click parameter types for our values: times (RFC 3339 or "1h" ago), durations, states, JSON objects."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import click

from ..durations import parse_duration
from ..errors import ValidationError
from ..timeutil import parse_time, utc_now


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
            self.fail(str(error) + (" or a duration ago such as 1h" if self.relative else ""), param, ctx)


class DurationParam(click.ParamType[float]):
    """A duration: ``600``, ``10m``, ``1h30m``; converted to seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return parse_duration(value)
        except ValidationError as error:
            self.fail(str(error), param, ctx)


class JsonObjectParam(click.ParamType[dict[str, Any]]):
    """A JSON object given on the command line."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            self.fail(f"not valid JSON ({error.msg} at position {error.pos})", param, ctx)
        if not isinstance(parsed, dict):
            kind = type(parsed).__name__
            self.fail(f"must be a JSON object like '{{\"amount\": 12}}', got {kind}", param, ctx)
        return parsed


STATE_CHOICE = click.Choice(["PENDING", "IN_FLIGHT", "SUCCEEDED", "FAILED", "DEAD"], case_sensitive=False)
TIME = TimeParam()
SINCE = TimeParam(relative=True)
DURATION = DurationParam()
JSON_OBJECT = JsonObjectParam()
