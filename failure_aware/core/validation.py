"""Checks on caller input, done before any write: each failure names the field and what is allowed."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ValidationError

EVENT_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
MAX_KEY_CHARS = 500
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 64 * 1024
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 64 * 1024
# One encoder for every payload: json.dumps with options builds a new one per call, which bulk imports feel.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_type(value: Any) -> str:
    """An event type: 1-200 characters of ``[A-Za-z0-9_.:/-]``."""
    if not isinstance(value, str) or not EVENT_TYPE_PATTERN.fullmatch(value):
        raise ValidationError(
            f"event_type {value!r} is invalid: use 1-200 characters of letters, digits and _ . : / -"
        )
    return value


def key(value: Any) -> str:
    """An event key: a non-empty string of at most 500 characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise ValidationError(f"key must be a non-empty string of at most {MAX_KEY_CHARS} characters")
    return value


def payload(value: Any, max_bytes: int) -> tuple[dict[str, Any], str]:
    """The payload as a dict and its compact JSON text, within ``max_bytes`` serialized."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValidationError(f"payload must be a JSON object, got {type(value).__name__}")
    try:
        text = _PAYLOAD_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"payload is not JSON-serializable: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValidationError(f"payload is {size} bytes serialized; the limit is {max_bytes}")
    return value, text


def optional_name(field: str, value: Any) -> str | None:
    """An optional short name (error type, actor, author): at most 200 characters."""
    if value is None:
        return None
    return name(field, value)


def name(field: str, value: Any) -> str:
    """A required short name: a non-empty string of at most 200 characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise ValidationError(f"{field} must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    return value


def text(field: str, value: Any, *, required: bool = False, limit: int = MAX_TEXT_CHARS) -> str | None:
    """Free text (an error message, a note): a string of at most ``limit`` characters."""
    if value is None:
        if required:
            raise ValidationError(f"{field} is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(f"{field} must be a non-empty string")
    if len(value) > limit:
        raise ValidationError(f"{field} is {len(value)} characters; the limit is {limit}")
    return value


def event_id(value: Any) -> int:
    """An event id: a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"event id must be a positive integer, got {value!r}")
    return value


def positive_int(field: str, value: Any, *, allow_none: bool = True) -> int | None:
    """A positive integer (a limit, a count) or ``None`` where allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{field} must be a positive integer, got {value!r}")
    return value
