"""parse_duration and format_duration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failure_aware.domain.durations import format_duration, parse_duration
from failure_aware.domain.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        (" 2m 5s ", 125.0),
        ("1d2h3m4s5ms", 93784.005),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("0s", 0.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        ("-5", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        ("abc", "expected"),
        ("10 seconds", "expected"),
        ("5x", "expected"),
        ("1H", "expected"),
        ("1h30", "expected"),
        ("m", "expected"),
        ("1.h", "expected"),
        ("nan", "expected"),
        ("inf", "expected"),
        ("1e3", "expected"),
        ("5m1h", "largest first"),
        ("5m5m", "largest first"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("9" * 400, "finite"),
        (True, "expected"),
        (None, "expected"),
        ([10], "expected"),
    ],
)
def test_parse_duration_rejects_with_the_value_named(text: object, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint) as caught:
        parse_duration(text)  # type: ignore[arg-type]
    assert "invalid duration" in str(caught.value)
    assert repr(text)[:20] in str(caught.value)


def test_long_garbage_is_shortened_in_the_message() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_duration("x" * 1000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "0s"),
        (0.25, "250ms"),
        (0.9996, "1s"),
        (1, "1s"),
        (1.5, "1.5s"),
        (45, "45s"),
        (59.9996, "1m"),
        (60, "1m"),
        (90, "1m 30s"),
        (3600, "1h"),
        (3725, "1h 2m"),
        (3605, "1h 5s"),
        (86400, "1d"),
        (90061, "1d 1h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), True])
def test_format_duration_rejects(bad: float) -> None:
    with pytest.raises(ValidationError):
        format_duration(bad)


@given(st.integers(min_value=0, max_value=10**8))
def test_format_then_parse_keeps_the_two_largest_units(seconds: int) -> None:
    shown = format_duration(seconds)
    back = parse_duration(shown)
    assert back <= seconds
    # Only units below the second one shown are dropped: the error is under that unit.
    units = [part[-1] for part in shown.split()]
    smallest = {"d": 86400, "h": 3600, "m": 60, "s": 1}[units[-1]]
    assert seconds - back < smallest or (len(units) == 1 and seconds - back < 86400)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_numbers_and_their_text_are_seconds(seconds: float) -> None:
    assert parse_duration(seconds) == seconds
    text = f"{seconds:.6f}"
    assert parse_duration(text) == float(text)
    assert parse_duration(text + "s") == float(text)
