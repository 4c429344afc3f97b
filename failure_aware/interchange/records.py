"""One interchange record (a line of JSON Lines, SPEC section 8) checked and normalized.

``parse_record`` turns a mapping into an ``EventIn``: times as integer microseconds, the payload as its
compact JSON text, and the full chain of transitions the import will write (given in the record, or
derived from its attempts and the retry policy by ``history``). Any problem raises ``ValidationError``
naming the field (``attempts[2].at: ...``); nothing here touches a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..core import validation
from ..errors import ValidationError
from ..policy import MAX_DELAY_SECONDS
from ..states import Outcome, State
from ..timeutil import EPOCH, parse_time
from . import history
from .model import OK, AnnotationIn, AttemptIn, EventIn, ImportContext, TransitionIn

EVENT_FIELDS = (
    "event_type",
    "key",
    "detected_at",
    "payload",
    "attempts",
    "annotations",
    "state",
    "next_retry_at",
    "transitions",
)
ATTEMPT_FIELDS = ("at", "outcome", "started_at", "error_type", "error", "forced", "actor")
ANNOTATION_FIELDS = ("at", "author", "text")
TRANSITION_FIELDS = ("at", "from_state", "to_state", "actor", "reason", "attempt_number")
# Far enough from datetime's limits that a retry delay (at most a year) added to any time cannot overflow.
MAX_YEAR = 9000
MAX_DELAY_US = int(MAX_DELAY_SECONDS * 1_000_000)  # the longest retry delay any policy can give
_KNOWN = {
    "": frozenset(EVENT_FIELDS),
    "attempts": frozenset(ATTEMPT_FIELDS),
    "annotations": frozenset(ANNOTATION_FIELDS),
    "transitions": frozenset(TRANSITION_FIELDS),
}
_ONE_US = timedelta(microseconds=1)
T = TypeVar("T")
OUTCOMES = tuple(o.value for o in Outcome)
STATES = tuple(s.value for s in State)


def parse_record(raw: Any, ctx: ImportContext, number: int) -> EventIn:
    """Check record ``number`` and normalize it; ``ValidationError`` names the first problem found.

    Messages start with the field they are about (``attempts[2].at: ...``).
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):  # the first test is the fast common case
        raise ValidationError(f"a record must be a JSON object, got {_kind(raw)}")
    _no_unknown(raw, "")
    if "event_type" not in raw:
        raise ValidationError("event_type is required")
    event_type = validation.event_type(raw["event_type"])
    key = raw.get("key")
    key = uuid.uuid4().hex if key is None else validation.key(key)
    given = raw.get("transitions")
    chain = None if given is None else _list(given, "transitions", lambda item: _transition(item, ctx.actor))
    detected = raw.get("detected_at")
    if detected is not None:
        detected_at_us = time_us(detected, "detected_at")
    else:  # the detection transition, when given, says when; otherwise the import time
        detected_at_us = chain[0].at_us if chain else ctx.now_us
    _, payload_json = validation.payload(raw.get("payload"), ctx.max_payload_bytes)
    attempts = _attempts(raw.get("attempts"), detected_at_us, ctx.actor)
    annotations = _list(raw.get("annotations"), "annotations", _annotation)
    state = raw.get("state")
    if state is not None and state not in STATES:
        raise ValidationError(f"state {state!r} is unknown; use one of {', '.join(STATES)}")
    if chain is None:
        policy = ctx.policies.for_type(event_type)
        transitions, budget = history.derive(attempts, detected_at_us, policy, ctx.actor)
        if state is not None and state != transitions[-1].to_state:
            raise ValidationError(
                f"state {state} does not follow from the attempts under the retry policy (they leave the "
                f"event {transitions[-1].to_state}); give its 'transitions' to import it as it is"
            )
    else:
        if chain and chain[0].at_us != detected_at_us:
            raise ValidationError("transitions[0].at (the detection) differs from detected_at")
        transitions, budget = history.check_given(chain, attempts)
        if state is not None and state != transitions[-1].to_state:
            raise ValidationError(
                f"state {state} differs from where the transitions end ({transitions[-1].to_state})"
            )
    next_retry = raw.get("next_retry_at")
    next_retry_at_us = None
    if next_retry is not None:
        next_retry_at_us = _next_retry(
            time_us(next_retry, "next_retry_at"), transitions[-1].to_state, attempts
        )
    return EventIn(  # positional: this runs once per imported line
        number, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions,
        next_retry_at_us, budget,
    )  # fmt: skip


def time_us(value: Any, field: str) -> int:
    """An RFC 3339 time with a zone, as microseconds since the epoch (naive times are refused)."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{field}: expected an RFC 3339 time string such as 2026-01-02T04:45:54Z, got {_kind(value)}"
        )
    try:  # the common case, fast; anything unusual goes through parse_time and its messages
        moment: datetime | None = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        moment = parse_time(value, field=field)
    if moment.year > MAX_YEAR:
        raise ValidationError(f"{field}: {value!r} is out of range (after the year {MAX_YEAR})")
    return (moment - EPOCH) // _ONE_US


def _next_retry(at_us: int, state: str, attempts: tuple[AttemptIn, ...]) -> int:
    """A given ``next_retry_at``: only for a FAILED event, within a year after its last (failed) attempt."""
    if state != State.FAILED:
        raise ValidationError(
            f"next_retry_at is given but the event ends {state}; only FAILED events have one"
        )
    last_us = attempts[-1].at_us  # a FAILED event has a failed last attempt
    if not last_us <= at_us <= last_us + MAX_DELAY_US:
        raise ValidationError("next_retry_at must lie between the last attempt's at and 365 days after it")
    return at_us


def _attempts(value: Any, detected_at_us: int, default_actor: str) -> tuple[AttemptIn, ...]:
    attempts = _list(value, "attempts", lambda item: _attempt(item, default_actor))
    previous = detected_at_us
    for index, item in enumerate(attempts):
        if item.at_us < previous:
            before = "detected_at" if index == 0 else f"attempts[{index - 1}].at"
            raise ValidationError(
                f"attempts[{index}].at is before {before}: "
                "attempts must be in time order, none before detection"
            )
        previous = item.at_us
    return attempts


def _attempt(item: Mapping[str, Any], default_actor: str) -> AttemptIn:
    if "at" not in item:
        raise ValidationError("at is required (when the attempt's outcome was known)")
    at_us = time_us(item["at"], "at")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise ValidationError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    started = item.get("started_at")
    started_at_us = None if started is None else time_us(started, "started_at")
    if started_at_us is not None and started_at_us > at_us:
        raise ValidationError("started_at is after its at")
    error_type = validation.optional_name("error_type", item.get("error_type"))
    error = validation.text("error", item.get("error"), limit=validation.MAX_ERROR_CHARS)
    if outcome == OK and (error_type is not None or error is not None):
        raise ValidationError("outcome succeeded takes no error_type or error")
    forced = item.get("forced", False)
    if not isinstance(forced, bool):
        raise ValidationError(f"forced must be true or false, got {forced!r}")
    actor = item.get("actor")
    actor = default_actor if actor is None else validation.name("actor", actor)
    return AttemptIn(at_us, outcome, started_at_us, error_type, error, forced, actor)


def _annotation(item: Mapping[str, Any]) -> AnnotationIn:
    for required in ANNOTATION_FIELDS:
        if required not in item:
            raise ValidationError(f"{required} is required")
    author = validation.name("author", item["author"])
    text = validation.text("text", item["text"], required=True)
    assert text is not None
    return AnnotationIn(time_us(item["at"], "at"), author, text)


def _transition(item: Mapping[str, Any], default_actor: str) -> TransitionIn:
    for required in ("at", "to_state"):
        if required not in item:
            raise ValidationError(f"{required} is required")
    at_us = time_us(item["at"], "at")
    from_state, to_state = item.get("from_state"), item["to_state"]
    if from_state is not None and from_state not in STATES:
        raise ValidationError(f"from_state {from_state!r} is not a state ({', '.join(STATES)})")
    if to_state not in STATES:
        raise ValidationError(f"to_state {to_state!r} is not a state ({', '.join(STATES)})")
    actor = item.get("actor")
    actor = default_actor if actor is None else validation.name("actor", actor)
    reason = item.get("reason")
    reason = "imported" if reason is None else validation.text("reason", reason, required=True)
    number = item.get("attempt_number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise ValidationError(f"attempt_number must be a positive integer or null, got {number!r}")
    return TransitionIn(at_us, from_state, to_state, actor, str(reason), number)


def _list(value: Any, where: str, parse: Callable[[Mapping[str, Any]], T]) -> tuple[T, ...]:
    """Parse a list of objects; a problem in item i is reported as ``where[i].<its message>``."""
    if not value:
        if value is None or value == []:
            return ()
        raise ValidationError(f"{where} must be a list, got {_kind(value)}")
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list, got {_kind(value)}")
    parsed = []
    for index, item in enumerate(value):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise ValidationError(f"{where}[{index}] must be an object, got {_kind(item)}")
        try:
            _no_unknown(item, where)
            parsed.append(parse(item))
        except ValidationError as exc:  # messages of the item parsers start with the field's name
            raise ValidationError(f"{where}[{index}].{exc}") from None
    return tuple(parsed)


def _no_unknown(raw: Mapping[str, Any], where: str) -> None:
    known = _KNOWN[where]
    if not raw.keys() <= known:
        unknown = [str(name) for name in raw if name not in known]
        plural = "s" if len(unknown) > 1 else ""
        allowed = ", ".join(sorted(known))
        raise ValidationError(f"{', '.join(unknown)}: unknown field{plural} (allowed: {allowed})")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__ if not isinstance(value, str) else repr(value)
