"""Times: timezone-aware UTC in the API, integer microseconds since the epoch in the database.

Storing ``*_us`` integers (not driver timestamp types) gives the same exact microsecond arithmetic on SQLite
and PostgreSQL, one body of SQL for both, and cheap window arithmetic for correlation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from failure_aware.domain.errors import ValidationError

Clock = Callable[[], datetime]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive ones are refused)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(
            f"time {moment.isoformat()} has no time zone; give an explicit offset such as Z"
        )
    return (moment - EPOCH) // _ONE_US


def from_us(micros: int) -> datetime:
    """The aware UTC datetime of microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=micros)


def opt_from_us(micros: int | None) -> datetime | None:
    """``from_us`` that passes ``None`` through (for nullable columns)."""
    return None if micros is None else from_us(micros)


def parse_time(text: str, *, field: str = "time") -> datetime:
    """Parse an RFC 3339 / ISO 8601 time with an explicit zone (``Z`` or ``+hh:mm``) into UTC."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(
            f"{field}: expected an RFC 3339 time such as 2026-01-02T04:45:54Z, got {text!r}"
        )
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "zZ" else raw)
    except ValueError:
        raise ValidationError(
            f"{field}: {text!r} is not an RFC 3339 time (e.g. 2026-01-02T04:45:54Z)"
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(f"{field}: {text!r} has no time zone; add Z or an offset such as +00:00")
    return _utc(moment, field)


def _utc(moment: datetime, field: str) -> datetime:
    """``moment`` in UTC; a time that lies before the year 1 or after 9999 in UTC is refused."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{field}: {moment.isoformat()} is out of range; times lie from 1970-01-01T00:00:00Z to now"
        ) from None


def format_time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds when present (the JSON output form)."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def aware(moment: datetime | None, *, field: str = "at") -> datetime | None:
    """Check a caller-supplied datetime is timezone-aware and convert it to UTC."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise ValidationError(f"{field}: expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{field}: {moment.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return _utc(moment, field)
