"""The rules for what comes in (SPEC 3 "Text and times"), one module for every path: the Python API, the
CLI, import and the HTTP API. Each check runs before any write; a refusal names the field and what is
allowed.

Two kinds of text, two rules:

- text a *caller names* (event type, key, actor, author, note, reason, payload keys and strings, a detail
  object) is refused with ``ValidationError`` when it holds a NUL or a lone surrogate (neither can be stored
  the same way on SQLite and PostgreSQL, nor encoded as UTF-8), and a key of only whitespace is refused;
- text a *failure produces* (error type, error message, traceback) is never refused: it is what went wrong,
  and refusing it would lose the failure. NUL and lone surrogates become U+FFFD, an over-long text is cut
  (``failure_text``), the same on both backends.

Times lie within [1970-01-01T00:00:00Z, now + ``max_clock_skew``] (``time_us``): a time outside could never
be exported and imported again, and one in the future would block the event's next attempt. Integers
(ids, limits, counts) fit in 64 bits (``MAX_INT``), the column type of both backends.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from failure_aware.domain.errors import ValidationError

EVENT_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
MAX_KEY_CHARS = 500
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: A failure's message is cut to this many characters (a 10 MB message is recorded, cut, never refused).
MAX_ERROR_CHARS = 64 * 1024
#: A handler's traceback keeps its last frames, at most this many UTF-8 bytes.
MAX_TRACEBACK_BYTES = 8 * 1024
#: An attempt's ``detail`` object, serialized.
MAX_DETAIL_BYTES = 16 * 1024
#: JSON objects (payloads, details) nest at most this deep; deeper ones are refused before any encoding.
MAX_JSON_DEPTH = 100
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 64 * 1024
#: The largest integer accepted anywhere (ids, limits, counts): the 64-bit columns of both backends.
MAX_INT = 2**63 - 1
#: Default of the ``max_clock_skew`` setting: how far in the future a given time may lie.
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 300.0
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)

# NUL and the surrogate code points: in a Python str a surrogate is always "lone" (a pair decoded from
# UTF-8 or JSON is one astral character), and neither SQLite nor PostgreSQL stores them faithfully.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
# One encoder for every payload: json.dumps with options builds a new one per call, which bulk imports feel.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ONE_US = timedelta(microseconds=1)


# -- text a caller names -----------------------------------------------------------------------------------
def storable(field: str, value: str) -> str:
    """Refuse caller-named text holding a NUL or a lone surrogate (``ValidationError`` names where)."""
    found = UNSTORABLE.search(value)
    if found is not None:
        char = found.group()
        what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
        raise ValidationError(f"{field} holds {what} at position {found.start()}; it cannot be stored")
    return value


def event_type(value: Any) -> str:
    """An event type: 1-200 characters of ``[A-Za-z0-9_.:/-]``."""
    if not isinstance(value, str) or not EVENT_TYPE_PATTERN.fullmatch(value):
        raise ValidationError(
            f"event_type {_show(value)} is invalid: use 1-200 characters of letters, digits and _ . : / -"
        )
    return value


def key(value: Any) -> str:
    """An event key: a string of 1-500 characters, not only whitespace, without NUL or lone surrogates."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY_CHARS:
        raise ValidationError(
            f"key must be a string of 1-{MAX_KEY_CHARS} characters, not only whitespace, got {_show(value)}"
        )
    return storable("key", value)


def payload(value: Any, max_bytes: int) -> tuple[dict[str, Any], str]:
    """The payload as a dict and its compact JSON text, within ``max_bytes`` serialized."""
    return json_object("payload", {} if value is None else value, max_bytes)


def detail(value: Any) -> str | None:
    """An attempt's ``detail``: a JSON object of at most ``MAX_DETAIL_BYTES`` serialized, as its text."""
    if value is None:
        return None
    if isinstance(value, CheckedDetail):
        return value.text
    return json_object("detail", value, MAX_DETAIL_BYTES)[1]


class CheckedDetail(Mapping[str, Any]):
    """A ``detail`` checked already (``checked_detail``), read-only, with its JSON text.

    A worker checks a handler's detail in the handler's thread (so a bad one fails that attempt alone) and
    records it from its loop, whose time every handler slot waits for: checking and encoding it there
    again was a quarter of the loop's CPU in issue 14's benchmark. Read-only, so the text stays its own.
    """

    __slots__ = ("_items", "text")

    def __init__(self, items: dict[str, Any], text: str) -> None:
        self._items = items
        self.text = text

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


def checked_detail(value: Any) -> CheckedDetail | None:
    """``detail``'s checks, keeping the result (see ``CheckedDetail``); None for None."""
    if value is None or isinstance(value, CheckedDetail):
        return value
    items, text = json_object("detail", value, MAX_DETAIL_BYTES)
    return CheckedDetail(dict(items), text)


def json_object(field: str, value: Any, max_bytes: int) -> tuple[dict[str, Any], str]:
    """A JSON object a caller gives, as a dict and its compact text: at most ``MAX_JSON_DEPTH`` deep, its
    keys strings, its strings storable, within ``max_bytes`` serialized. Checked without recursion, so no
    nesting however deep can exhaust the stack."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a JSON object, got {type(value).__name__}")
    _check_tree(field, value)
    try:
        text = _PAYLOAD_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{field} is not JSON-serializable: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValidationError(f"{field} is {size} bytes serialized; the limit is {max_bytes}")
    return value, text


def _check_tree(field: str, root: dict[str, Any]) -> None:
    stack: list[tuple[Any, int]] = [(root, 1)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(f"{field} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(node, dict | list | tuple):
            if id(node) in seen:
                raise ValidationError(f"{field} is not JSON-serializable: it contains itself")
            seen.add(id(node))
        if isinstance(node, dict):
            for name, item in node.items():
                if isinstance(name, str):
                    storable(f"{field} key", name)
                elif name is not None and not isinstance(name, int | float | bool):
                    raise ValidationError(f"{field} keys must be strings, got {type(name).__name__}")
                stack.append((item, depth + 1))
        elif isinstance(node, list | tuple):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            storable(f"{field} string", node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValidationError(f"{field} is not JSON-serializable: it holds {node!r}")


def optional_name(field: str, value: Any) -> str | None:
    """An optional short name (actor, author): at most 200 characters."""
    if value is None:
        return None
    return name(field, value)


def name(field: str, value: Any) -> str:
    """A required short name: a non-blank string of at most 200 characters, storable."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise ValidationError(f"{field} must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    return storable(field, value)


def text(field: str, value: Any, *, required: bool = False, limit: int = MAX_TEXT_CHARS) -> str | None:
    """Free text a caller writes (a note, a reason): a string of at most ``limit`` characters, storable."""
    if value is None:
        if required:
            raise ValidationError(f"{field} is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(f"{field} must be a non-empty string")
    if len(value) > limit:
        raise ValidationError(f"{field} is {len(value)} characters; the limit is {limit}")
    return storable(field, value)


# -- text a failure produces --------------------------------------------------------------------------------
def failure_text(value: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """A failure's text as it is recorded: NUL and lone surrogates as U+FFFD, cut to ``limit`` characters
    (the cut marked). Never refuses a string: the failure is data."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"an error message must be a string, got {type(value).__name__}")
    clean = UNSTORABLE.sub(_REPLACEMENT, value)
    if len(clean) > limit:
        marker = f" … [cut: {len(clean) - limit} more characters]"
        clean = clean[: limit - len(marker)] + marker
    return clean


def failure_name(value: str | None) -> str | None:
    """An error type as recorded: ``failure_text`` cut to 200 characters; blank means none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"error_type must be a string, got {type(value).__name__}")
    clean = failure_text(value.strip(), MAX_NAME_CHARS)
    return clean or None


def traceback_text(value: str | None) -> str | None:
    """A traceback as recorded: NUL and lone surrogates as U+FFFD, its *last* ``MAX_TRACEBACK_BYTES``
    (UTF-8) kept (the innermost frames say most), the cut marked."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"a traceback must be a string, got {type(value).__name__}")
    clean = UNSTORABLE.sub(_REPLACEMENT, value[-4 * MAX_TRACEBACK_BYTES:])
    data = clean.encode("utf-8")
    if len(data) <= MAX_TRACEBACK_BYTES and len(clean) == len(value):
        return clean
    marker = "[earlier frames cut]\n"
    return marker + data[-(MAX_TRACEBACK_BYTES - len(marker)):].decode("utf-8", errors="ignore")


def retry_after(value: Any) -> float | datetime | None:
    """A failure's ``retry_after`` as given: seconds (a finite number >= 0) or an aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError("retry_after: a datetime needs a time zone")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValidationError(f"retry_after must be seconds (a number >= 0) or an aware datetime, got "
                              f"{_show(value)}")
    return float(value)


# -- numbers and times --------------------------------------------------------------------------------------
def integer(field: str, value: Any, *, minimum: int = 1) -> int:
    """An integer in ``[minimum, 2**63 - 1]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
        raise ValidationError(f"{field} must be an integer from {minimum} to {MAX_INT}, got {_show(value)}")
    return value


def event_id(value: Any) -> int:
    """An event id: a positive integer of at most 2**63 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise ValidationError(f"event id must be a positive integer of at most {MAX_INT}, got {_show(value)}")
    return value


def positive_int(field: str, value: Any, *, allow_none: bool = True) -> int | None:
    """A positive integer (a limit, a count) of at most 2**63 - 1, or ``None`` where allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise ValidationError(f"{field} must be a positive integer of at most {MAX_INT}, got {_show(value)}")
    return value


def latest_us(now_us: int, max_clock_skew_seconds: float) -> int:
    """The latest time accepted at ``now_us``: now plus the allowed clock skew."""
    return now_us + int(max_clock_skew_seconds * 1_000_000)


def time_us(moment: Any, field: str, *, latest: int) -> int:
    """An aware datetime within [1970-01-01T00:00:00Z, ``latest``] as microseconds since the epoch."""
    if not isinstance(moment, datetime):
        raise ValidationError(f"{field}: expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{field}: {moment.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return bounded_us((moment - EARLIEST_TIME) // _ONE_US, field, latest=latest)


def bounded_us(micros: int, field: str, *, latest: int) -> int:
    """``micros`` (since the epoch) if within [1970-01-01T00:00:00Z, ``latest``], else ``ValidationError``
    naming the bound it crossed."""
    if micros < 0:
        raise ValidationError(f"{field}: {_iso(micros)} is before 1970-01-01T00:00:00Z, the earliest time "
                              "accepted")
    if micros > latest:
        raise ValidationError(f"{field}: {_iso(micros)} is after {_iso(latest)} (now plus max_clock_skew), "
                              "the latest time accepted")
    return micros


def _iso(micros: int) -> str:
    try:
        return (EARLIEST_TIME + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return "a time out of range"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."
