"""One interchange record (a line of JSON Lines, SPEC section 8) checked and normalized.

``parse_record`` turns a mapping into an ``EventIn``: times as integer microseconds, the payload as its
compact JSON text, and the full chain of transitions the import will write (given in the record, or
derived from its attempts and the retry policy by ``history``). Any problem raises ``ValidationError``
naming the field (``attempts[2].at: ...``); nothing here touches a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ..core import validation
from ..errors import ValidationError
from ..states import Outcome, State
from ..timeutil import parse_time, to_us
from . import history
from .model import AnnotationIn, AttemptIn, EventIn, ImportContext, TransitionIn

EVENT_FIELDS = (
    "event_type", "key", "detected_at", "payload", "attempts", "annotations",
    "state", "next_retry_at", "transitions",
)
ATTEMPT_FIELDS = ("at", "outcome", "started_at", "error_type", "error", "forced", "actor")
ANNOTATION_FIELDS = ("at", "author", "text")
TRANSITION_FIELDS = ("at", "from_state", "to_state", "actor", "reason", "attempt_number")
OUTCOMES = tuple(o.value for o in Outcome)
STATES = tuple(s.value for s in State)


def parse_record(raw: Any, ctx: ImportContext, number: int) -> EventIn:
    """Check record ``number`` and normalize it; ``ValidationError`` names the first problem found."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"a record must be a JSON object, got {_kind(raw)}")
    _no_unknown(raw, EVENT_FIELDS, "")
    if "event_type" not in raw:
        raise ValidationError("event_type is required")
    event_type = validation.event_type(raw["event_type"])
    key = raw.get("key")
    key = uuid.uuid4().hex if key is None else _field("key", validation.key, key)
    detected = raw.get("detected_at")
    detected_at_us = ctx.now_us if detected is None else time_us(detected, "detected_at")
    _, payload_json = _field("payload", validation.payload, raw.get("payload"), ctx.max_payload_bytes)
    attempts = _attempts(raw.get("attempts"), detected_at_us, ctx.actor)
    annotations = _list(raw.get("annotations"), "annotations", _annotation)
    state = raw.get("state")
    if state is not None and state not in STATES:
        raise ValidationError(f"state {state!r} is unknown; use one of {', '.join(STATES)}")
    next_retry = raw.get("next_retry_at")
    next_retry_at_us = None if next_retry is None else time_us(next_retry, "next_retry_at")
    policy = ctx.policies.for_type(event_type)
    if raw.get("transitions") is None:
        transitions, budget = history.derive(attempts, detected_at_us, policy, ctx.actor)
        end = transitions[-1].to_state
        if state is not None and state != end:
            raise ValidationError(
                f"state {state} does not follow from the attempts under the retry policy (they leave the "
                f"event {end}); give its 'transitions' to import it as it is"
            )
        if next_retry_at_us is not None and end != State.FAILED:
            raise ValidationError(f"next_retry_at is given but the attempts leave the event {end}, not FAILED")
    else:
        given = _list(raw["transitions"], "transitions", lambda item, where: _transition(item, where, ctx.actor))
        transitions, budget = history.check_given(given, attempts)
        if state is not None and state != transitions[-1].to_state:
            raise ValidationError(f"state {state} differs from where the transitions end ({transitions[-1].to_state})")
    return EventIn(
        number=number, event_type=event_type, key=key, detected_at_us=detected_at_us, payload_json=payload_json,
        attempts=attempts, annotations=annotations, transitions=transitions,
        given_transitions=raw.get("transitions") is not None, next_retry_at_us=next_retry_at_us,
        budget_failures=budget,
    )


def time_us(value: Any, where: str) -> int:
    """An RFC 3339 time with a zone, as microseconds since the epoch (naive times are refused)."""
    if not isinstance(value, str):
        raise ValidationError(f"{where}: expected an RFC 3339 time string such as 2026-01-02T04:45:54Z, "
                              f"got {_kind(value)}")
    return to_us(parse_time(value, field=where))


def _attempts(value: Any, detected_at_us: int, default_actor: str) -> tuple[AttemptIn, ...]:
    attempts = _list(value, "attempts", lambda item, where: _attempt(item, where, default_actor))
    previous = detected_at_us
    for index, item in enumerate(attempts):
        if item.at_us < previous:
            before = "detected_at" if index == 0 else f"attempts[{index - 1}].at"
            raise ValidationError(
                f"attempts[{index}].at is before {before}: attempts must be in time order, none before detection"
            )
        previous = item.at_us
    return attempts


def _attempt(raw: Any, where: str, default_actor: str) -> AttemptIn:
    item = _object(raw, where, ATTEMPT_FIELDS)
    if "at" not in item:
        raise ValidationError(f"{where}.at is required (when the attempt's outcome was known)")
    at_us = time_us(item["at"], f"{where}.at")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise ValidationError(f"{where}.outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    started = item.get("started_at")
    started_at_us = None if started is None else time_us(started, f"{where}.started_at")
    if started_at_us is not None and started_at_us > at_us:
        raise ValidationError(f"{where}.started_at is after its at")
    error_type = _field(f"{where}.error_type", validation.optional_name, f"{where}.error_type",
                        item.get("error_type"))
    error = _field(f"{where}.error", validation.text, f"{where}.error", item.get("error"),
                   limit=validation.MAX_ERROR_CHARS)
    if outcome == Outcome.SUCCEEDED and (error_type is not None or error is not None):
        raise ValidationError(f"{where}: a succeeded attempt takes no error_type or error")
    forced = item.get("forced", False)
    if not isinstance(forced, bool):
        raise ValidationError(f"{where}.forced must be true or false, got {forced!r}")
    actor = item.get("actor")
    actor = default_actor if actor is None else validation.name(f"{where}.actor", actor)
    return AttemptIn(at_us, outcome, started_at_us, error_type, error, forced, actor)


def _annotation(raw: Any, where: str) -> AnnotationIn:
    item = _object(raw, where, ANNOTATION_FIELDS)
    for required in ANNOTATION_FIELDS:
        if required not in item:
            raise ValidationError(f"{where}.{required} is required")
    author = validation.name(f"{where}.author", item["author"])
    text = validation.text(f"{where}.text", item["text"], required=True)
    assert text is not None
    return AnnotationIn(time_us(item["at"], f"{where}.at"), author, text)


def _transition(raw: Any, where: str, default_actor: str) -> TransitionIn:
    item = _object(raw, where, TRANSITION_FIELDS)
    if "at" not in item or "to_state" not in item:
        raise ValidationError(f"{where} needs at least at and to_state")
    at_us = time_us(item["at"], f"{where}.at")
    from_state, to_state = item.get("from_state"), item["to_state"]
    if from_state is not None and from_state not in STATES:
        raise ValidationError(f"{where}.from_state {from_state!r} is not a state ({', '.join(STATES)})")
    if to_state not in STATES:
        raise ValidationError(f"{where}.to_state {to_state!r} is not a state ({', '.join(STATES)})")
    actor = item.get("actor")
    actor = default_actor if actor is None else validation.name(f"{where}.actor", actor)
    reason = item.get("reason")
    reason = "imported" if reason is None else validation.text(f"{where}.reason", reason, required=True)
    number = item.get("attempt_number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise ValidationError(f"{where}.attempt_number must be a positive integer or null, got {number!r}")
    return TransitionIn(at_us, from_state, to_state, actor, str(reason), number)


def _list(value: Any, where: str, parse: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list, got {_kind(value)}")
    return tuple(parse(item, f"{where}[{index}]") for index, item in enumerate(value))


def _object(raw: Any, where: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be an object, got {_kind(raw)}")
    _no_unknown(raw, known, f"{where}.")
    return raw


def _no_unknown(raw: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    unknown = [name for name in raw if name not in known]
    if unknown:
        names = ", ".join(repr(f"{prefix}{name}") for name in unknown)
        raise ValidationError(f"unknown field {names} (allowed: {', '.join(known)})")


def _field(where: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a ``validation`` check, prefixing its message with the field when it does not name it."""
    try:
        return check(*args, **kwargs)
    except ValidationError as exc:
        message = str(exc)
        raise ValidationError(message if message.startswith(where) else f"{where}: {message}") from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__ if not isinstance(value, str) else repr(value)
