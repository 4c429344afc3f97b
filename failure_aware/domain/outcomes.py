"""What a handler can say about its attempt beyond "returned" (succeeded) or "raised" (failed).

A handler given to ``Ledger.run``, ``retry_due`` or a worker succeeds by returning and fails by raising.
That is all most handlers need. A handler that knows more says so with these two types (SPEC 3 and 4):

- raise ``HandlerFailure`` to fail with an explicit error type, as *permanent* (the event goes to DEAD at
  once), with a ``retry_after`` (seconds, or an aware datetime, as an HTTP ``Retry-After`` says), or with a
  ``detail`` object (for example the HTTP status and the start of a response body);
- return ``Succeeded(detail=...)`` to succeed with a ``detail`` object.

Pure: no I/O, no database. The runner validates ``detail`` and ``retry_after`` when it records the
attempt; a handler that passes values out of bounds gets its attempt recorded as a failure that says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class HandlerFailure(Exception):
    """Raised by a handler: this attempt failed, and here is what is known about why.

    ``error_type`` defaults to ``"HandlerFailure"``; ``permanent`` sends the event to DEAD at once;
    ``retry_after`` (seconds >= 0, or an aware ``datetime``) sets the earliest next try (the later of it
    and the policy's, capped by ``max_retry_after``); ``detail`` is a JSON object kept with the attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        permanent: bool = False,
        retry_after: float | datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.permanent = permanent
        self.retry_after = retry_after
        self.detail = dict(detail) if detail is not None else None


@dataclass(frozen=True)
class Succeeded:
    """Returned by a handler: this attempt succeeded, with a ``detail`` object kept with the attempt."""

    detail: Mapping[str, Any] | None = None


__all__ = ["HandlerFailure", "Succeeded"]
