"""Durations as people write them, and back.

``parse_duration`` turns ``"90"``, ``"10s"``, ``"5m"``, ``"1h30m"``, ``"1h 30m"``, ``"250ms"``, ``"1.5h"``
or a plain number of seconds into a float number of seconds. Units are ``d``, ``h``, ``m``, ``s`` and ``ms``
(lower case); in a compound duration each unit appears once, largest first. Negative, empty, non-finite
or unreadable values raise ``ValidationError`` naming the value.

``format_duration`` is the reverse for display: ``"1h 2m"``, ``"45s"``, ``"1.5s"``, ``"250ms"``.
"""

from __future__ import annotations

import math
import re

from failure_aware.domain.errors import ValidationError

__all__ = ["format_duration", "parse_duration"]

# unit -> seconds, largest first: the order a compound duration must follow.
_UNIT_SECONDS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_RANK = {unit: rank for rank, unit in enumerate(_UNIT_SECONDS)}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_COMPONENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)\s*")
_EXPECTED = "expected seconds or a number with a unit, like '90', '10s', '5m', '1h30m' or '250ms'"


def parse_duration(text: str | int | float) -> float:
    """Return ``text`` as a number of seconds (``>= 0``, finite).

    Numbers are seconds. Strings are a bare number of seconds (``"90"``) or one or more
    ``<number><unit>`` parts, largest unit first, optionally separated by spaces (``"1h30m"``, ``"1h 30m"``).

    Raises:
        ValidationError: for negative, empty, NaN, infinite or unreadable values; the message names it.
    """
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ValidationError(f"invalid duration {_show(text)}: {_EXPECTED}")
    seconds = _parse_text(text) if isinstance(text, str) else float(text)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValidationError(f"invalid duration {_show(text)}: must be a finite number of seconds")
    if seconds < 0:
        raise ValidationError(f"invalid duration {_show(text)}: must not be negative")
    return seconds


def _show(value: object) -> str:
    """Return ``repr(value)``, shortened so an error message stays readable."""
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _parse_text(text: str) -> float:
    """Parse the string form of a duration (see ``parse_duration``)."""
    stripped = text.strip()
    if not stripped:
        raise ValidationError(f"invalid duration {_show(text)}: empty; {_EXPECTED}")
    if stripped.startswith("-"):
        raise ValidationError(f"invalid duration {_show(text)}: must not be negative")
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    total = 0.0
    position = 0
    previous_rank = -1
    while position < len(stripped):
        match = _COMPONENT.match(stripped, position)
        if match is None:
            raise ValidationError(f"invalid duration {_show(text)}: {_EXPECTED}")
        number, unit = match.group(1), match.group(2)
        if _UNIT_RANK[unit] <= previous_rank:
            raise ValidationError(
                f"invalid duration {_show(text)}: each unit at most once, largest first (d, h, m, s, ms)"
            )
        previous_rank = _UNIT_RANK[unit]
        # ms divides rather than multiplies by 0.001 so that "250ms" is exactly 0.25.
        total += float(number) / 1000 if unit == "ms" else float(number) * _UNIT_SECONDS[unit]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Return a compact human form of ``seconds``: ``"1h 2m"``, ``"45s"``, ``"1.5s"``, ``"250ms"``, ``"0s"``.

    Below one second the value is shown in whole milliseconds; below a minute in seconds with up to
    millisecond precision; from a minute on, rounded to whole seconds and shown with its two largest
    non-zero units (``3725`` -> ``"1h 2m"``: the remaining seconds are dropped).

    Raises:
        ValidationError: for a negative or non-finite value.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValidationError(f"cannot format duration {seconds!r}: expected a finite number of seconds")
    if seconds < 0:
        raise ValidationError(f"cannot format duration {seconds!r}: must not be negative")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    if millis < 60_000 and millis % 1000:
        return f"{millis / 1000:g}s"
    remaining = round(seconds)
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        count, remaining = divmod(remaining, int(_UNIT_SECONDS[unit]))
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])
