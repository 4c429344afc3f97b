"""Running a handler on a claim and turning whatever happened into the ``ClaimOutcome`` to record.

``Ledger.run`` and the worker (``Worker._attempt``) both call ``run_handler``, so a handler's attempt is
recorded the same way wherever it runs. Whatever the handler does is an outcome (SPEC 3): it returns
(succeeded; ``Succeeded(detail=...)`` adds a detail), raises ``HandlerFailure`` (failed, with what it says:
error type, permanent, retry_after, detail), or raises anything else, any ``BaseException`` included
(failed, with the exception's type name, message and traceback). An exception whose ``str()`` itself
raises is recorded as ``<unprintable TYPE>``. A ``BaseException`` that is not an ``Exception``
(``SystemExit``, ``KeyboardInterrupt``, ...) is recorded like any failure and then raised again by the
caller (``HandlerRun.reraise``), so it still stops the program, but never leaves the event IN_FLIGHT.

A handler that says something out of bounds (a ``detail`` that is not a small JSON object, a negative
``retry_after``) gets its attempt recorded as a failure saying so (error type ``InvalidHandlerOutcome``).
Nothing here touches the database.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from failure_aware.domain import validation
from failure_aware.domain.errors import FailureAwareError, StorageError, ValidationError
from failure_aware.domain.outcomes import HandlerFailure, Succeeded
from failure_aware.domain.records import Claim, Event
from failure_aware.events.claims import ClaimOutcome

#: Frames of a handler's traceback that are formatted (the last ones); the text is then cut to 8 KiB.
TRACEBACK_FRAMES = 30
_MAX_LINE_CHARS = 2000  # one formatted line (the message line of a 10 MB message, say) at most
INVALID_OUTCOME = "InvalidHandlerOutcome"
UNRECORDABLE = "UnrecordableOutcome"


@dataclass(frozen=True)
class HandlerRun:
    """One handler call on a claim: the outcome to record, how long it ran, and the ``BaseException``
    that is not an ``Exception`` (``SystemExit``, ...) to raise again once the outcome is recorded."""

    outcome: ClaimOutcome
    seconds: float
    stop: BaseException | None = None

    def reraise(self) -> None:
        """Raise the ``SystemExit`` (``KeyboardInterrupt``, ...) the handler raised, if it did."""
        if self.stop is not None:
            raise self.stop


def run_handler(
    handler: Callable[[Event], object], claim: Claim, clock: Callable[[], datetime]
) -> HandlerRun:
    """Call ``handler(claim.event)`` and describe what happened as a ``ClaimOutcome``; never raises."""
    began = time.monotonic()
    stop: BaseException | None = None
    try:
        returned = handler(claim.event)
    except BaseException as exc:  # every failure is data (SPEC 3); stopping signals are raised again later
        seconds = time.monotonic() - began
        if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt, ...: meant to stop the program
            stop = exc
        outcome = _failed(claim, exc, clock(), seconds)
    else:
        seconds = time.monotonic() - began
        detail = returned.detail if isinstance(returned, Succeeded) else None
        at = clock()
        try:
            checked = _checked_detail(detail)
            outcome = ClaimOutcome(claim, True, at=at, duration_seconds=seconds, detail=checked)
        except ValidationError as problem:
            outcome = _invalid(claim, f"the handler succeeded, but its {problem}", at, seconds)
    return HandlerRun(outcome, seconds, stop)


def exception_text(exc: BaseException) -> str:
    """The message recorded for an exception: its ``str()``, else its ``repr()``, else (both raise, or
    are not text) ``<unprintable TYPE>``. Cutting and cleaning it is the ledger's (``validation``)."""
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception:  # a broken __str__ must not cost the failure it describes
            continue
        if isinstance(text, str) and text:
            return text
    return f"<unprintable {exception_type(exc)}>"


def exception_type(exc: BaseException) -> str:
    """The error type recorded for an exception: its class name."""
    name = getattr(type(exc), "__name__", None)
    return name if isinstance(name, str) and name else "Exception"


def format_traceback(exc: BaseException) -> str | None:
    """The last frames of ``exc``'s traceback as text, each line cut to a sane length (then cut to 8 KiB
    by ``validation.traceback_text``); None when it cannot be formatted."""
    try:
        lines = traceback.TracebackException.from_exception(exc, limit=-TRACEBACK_FRAMES).format()
        return "".join(line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + " …\n"
                       for line in lines)
    except Exception:  # a traceback that cannot be formatted is not worth losing the failure over
        return None


def unrecordable(outcome: ClaimOutcome, problem: FailureAwareError) -> ClaimOutcome:
    """A plain failure for an outcome the ledger could not store as it was, saying why (so the claim is
    still closed and the attempt counted)."""
    original = f"{outcome.error_type}: {outcome.error}" if not outcome.ok else "the attempt succeeded"
    message = f"its outcome could not be recorded ({problem}); it was: {original}"
    return ClaimOutcome(outcome.claim, False, error_type=UNRECORDABLE, error=message[:4096], at=outcome.at,
                        duration_seconds=outcome.duration_seconds)


def record(
    finish_many: Callable[[list[ClaimOutcome]], list[Any]], outcomes: list[ClaimOutcome]
) -> list[Any]:
    """Record ``outcomes`` with ``finish_many`` (``Ledger.finish_many``); one it refuses as it is (its
    ``ValidationError`` or ``StorageError``) is recorded again as a plain failure saying why, so every
    claim is closed; should that fail too, the database itself is failing and its error is raised.
    Returns each outcome's result (or the ``StaleClaim`` that kept it out), in order."""
    if not outcomes:
        return []
    try:
        results = list(finish_many(outcomes))
    except StorageError as error:
        if len(outcomes) > 1:
            raise  # finish_many already wrote a group's outcomes one by one: the database itself failed
        results = [error]  # one outcome alone: its data, or the database; the plain failure below tells
    refused = [i for i, result in enumerate(results) if isinstance(result, ValidationError | StorageError)]
    if refused:
        again = finish_many([unrecordable(outcomes[i], results[i]) for i in refused])
        for i, result in zip(refused, again, strict=True):
            results[i] = result
    return results


def _failed(claim: Claim, exc: BaseException, at: datetime, seconds: float) -> ClaimOutcome:
    tb = format_traceback(exc)
    if not isinstance(exc, HandlerFailure):
        return ClaimOutcome(claim, False, error_type=exception_type(exc), error=exception_text(exc), at=at,
                            traceback=tb, duration_seconds=seconds)
    message = exc.message if isinstance(exc.message, str) else exception_text(exc)
    try:
        error_type = exc.error_type if isinstance(exc.error_type, str) else None
        if not isinstance(exc.permanent, bool):
            raise ValidationError(f"permanent must be True or False, got {exc.permanent!r}")
        return ClaimOutcome(
            claim, False, error_type=error_type or exception_type(exc), error=message, at=at,
            permanent=exc.permanent, retry_after=validation.retry_after(exc.retry_after),
            detail=_checked_detail(exc.detail), traceback=tb, duration_seconds=seconds,
        )
    except ValidationError as problem:
        return _invalid(claim, f"the handler failed ({message}), and its {problem}", at, seconds, tb)


def _checked_detail(detail: Any) -> Mapping[str, Any] | None:
    # The limits, checked here so a bad detail fails this attempt alone; the text is kept for recording.
    return validation.checked_detail(detail)


def _invalid(claim: Claim, message: str, at: datetime, seconds: float, tb: str | None = None) -> ClaimOutcome:
    return ClaimOutcome(claim, False, error_type=INVALID_OUTCOME, error=message, at=at, traceback=tb,
                        duration_seconds=seconds)


__all__ = ["HandlerRun", "exception_text", "format_traceback", "record", "run_handler", "unrecordable"]
