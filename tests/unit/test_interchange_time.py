"""The exporter's fast time text equals the one rule for JSON times (``timeutil.format_time``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from failure_aware.domain.timeutil import format_time, from_us
from failure_aware.interchange import exporter

LAST_MICROSECOND = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


@given(st.integers(min_value=0, max_value=LAST_MICROSECOND))
def test_time_text_equals_format_time(micros: int) -> None:
    assert exporter.time_text(micros) == format_time(from_us(micros))


@given(st.integers(min_value=0, max_value=LAST_MICROSECOND // 1_000_000))
def test_whole_seconds_have_no_fraction(seconds: int) -> None:
    micros = seconds * 1_000_000
    assert exporter.time_text(micros) == format_time(from_us(micros))
    assert "." not in exporter.time_text(micros)


def test_known_times() -> None:
    assert exporter.time_text(0) == "1970-01-01T00:00:00Z"
    assert exporter.time_text(1) == "1970-01-01T00:00:00.000001Z"
    assert exporter.time_text(1_767_225_600_500_000) == "2026-01-01T00:00:00.500000Z"
