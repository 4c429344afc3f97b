"""Opaque cursors: a page's position *and* its filters, so the next page can never drop a filter.

A cursor is URL-safe base64 of a small JSON object. It is not signed: decoding one a client altered
gives another position or other filters, validated like any input, and the token's scope still applies.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from failure_aware.domain.errors import ValidationError

MAX_CURSOR_CHARS = 4096


def encode(filters: dict[str, Any], position: Any) -> str:
    """A cursor for the page after ``position`` under ``filters``."""
    raw = json.dumps({"f": filters, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[dict[str, Any], Any]:
    """``(filters, position)`` of a cursor; ``ValidationError`` for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("f"), dict) or "p" not in data:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValidationError("cursor is not one this API gave out; start again without it") from None
    return data["f"], data["p"]


def merge(given: dict[str, Any], cursor: str | None) -> tuple[dict[str, Any], Any]:
    """The filters of a request and its position: a cursor's own filters, which any filter given with it
    must equal (a request cannot change the filters of a cursor halfway through a list)."""
    present = {k: v for k, v in given.items() if v is not None}
    if cursor is None:
        return present, None
    filters, position = decode(cursor)
    for name, value in present.items():
        if filters.get(name) != value:
            raise ValidationError(
                f"filter {name} differs from the cursor's; a cursor carries its filters: drop the filter "
                "or start again without the cursor"
            )
    return filters, position
