"""One interchange record (a line of JSON Lines, SPEC section 8) checked and normalized.

``parse_record`` turns a mapping into an ``EventIn``: times as integer microseconds, the payload as its
compact JSON text, and the full chain of transitions the import will write (given in the record, or
derived from its attempts and the retry policy by ``history``). Any problem raises ``ValidationError``
naming the field (``attempts[2].at: ...``); nothing here touches a database.

``Checker`` is what the importer calls for every record: it returns the record in the spool's plain form
(``model.to_plain``). The common shape (no ``transitions``; plain dicts, lists and strings where they are
expected) goes through a fast path that checks the same rules inline and gives the same result; on any doubt
- anything unusual, anything wrong - it hands the record to ``parse_record``, whose checks and messages are
the reference. The fast path never raises and never decides that a record is invalid.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from failure_aware.domain import validation
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.policy import MAX_DELAY_SECONDS, RetryPolicy
from failure_aware.domain.states import Outcome, State
from failure_aware.domain.timeutil import EPOCH, parse_time
from failure_aware.interchange import history
from failure_aware.interchange.forms import (
    FAILED,
    OK,
    AnnotationIn,
    AttemptIn,
    EventIn,
    ImportContext,
    TransitionIn,
    to_plain,
)

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
ATTEMPT_FIELDS = ("at", "outcome", "started_at", "error_type", "error", "forced", "actor", "traceback",
                  "duration_seconds", "detail")
ANNOTATION_FIELDS = ("at", "author", "text")
TRANSITION_FIELDS = ("at", "from_state", "to_state", "actor", "reason", "attempt_number")
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
    latest = ctx.latest_us
    chain = None if given is None else _list(given, "transitions",
                                             lambda item: _transition(item, ctx.actor, latest))
    detected = raw.get("detected_at")
    if detected is not None:
        detected_at_us = time_us(detected, "detected_at", latest)
    else:  # the detection transition, when given, says when; otherwise the import time
        detected_at_us = chain[0].at_us if chain else ctx.now_us
    _, payload_json = validation.payload(raw.get("payload"), ctx.max_payload_bytes)
    attempts = _attempts(raw.get("attempts"), detected_at_us, ctx.actor, latest)
    annotations = _list(raw.get("annotations"), "annotations", lambda item: _annotation(item, latest))
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
            time_us(next_retry, "next_retry_at", latest + MAX_DELAY_US), transitions[-1].to_state, attempts
        )
    return EventIn(  # positional: this runs once per imported line
        number, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions,
        next_retry_at_us, budget,
    )  # fmt: skip


def time_us(value: Any, field: str, latest: int) -> int:
    """An RFC 3339 time with a zone, as microseconds since the epoch, within [1970-01-01T00:00:00Z,
    ``latest``] (now plus max_clock_skew: SPEC 3); naive times are refused."""
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
    return validation.bounded_us((moment - EPOCH) // _ONE_US, field, latest=latest)


CLUSTER_NOTE_FIELDS = ("kind", "event_type", "window_start", "window_end", "at", "author", "text")


def parse_cluster_note(raw: Mapping[str, Any], ctx: ImportContext) -> tuple[str, int, int, int, str, str]:
    """A ``{"kind": "cluster_note", ...}`` record (SPEC 8) checked: ``(event_type, span start, span end,
    at, author, text)``, times in microseconds."""
    unknown = [str(name) for name in raw if name not in CLUSTER_NOTE_FIELDS]
    if unknown:
        raise ValidationError(f"{', '.join(unknown)}: unknown field(s) of a cluster note (allowed: "
                              f"{', '.join(CLUSTER_NOTE_FIELDS)})")
    for required in CLUSTER_NOTE_FIELDS[1:]:
        if required not in raw:
            raise ValidationError(f"{required} is required in a cluster note")
    event_type = validation.event_type(raw["event_type"])
    start = time_us(raw["window_start"], "window_start", ctx.latest_us)
    end = time_us(raw["window_end"], "window_end", ctx.latest_us)
    if end < start:
        raise ValidationError("window_end is before window_start")
    at = time_us(raw["at"], "at", ctx.latest_us)
    author = validation.name("author", raw["author"])
    text = validation.text("text", raw["text"], required=True)
    assert text is not None
    return event_type, start, end, at, author, text


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


def _attempts(value: Any, detected_at_us: int, default_actor: str, latest: int) -> tuple[AttemptIn, ...]:
    attempts = _list(value, "attempts", lambda item: _attempt(item, default_actor, latest))
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


def _attempt(item: Mapping[str, Any], default_actor: str, latest: int) -> AttemptIn:
    if "at" not in item:
        raise ValidationError("at is required (when the attempt's outcome was known)")
    at_us = time_us(item["at"], "at", latest)
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise ValidationError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    started = item.get("started_at")
    started_at_us = None if started is None else time_us(started, "started_at", latest)
    if started_at_us is not None and started_at_us > at_us:
        raise ValidationError("started_at is after its at")
    # What a failure produced is recorded as it is (SPEC 3), cleaned and cut as every path does.
    error_type = validation.failure_name(item.get("error_type"))
    error = validation.failure_text(item.get("error"))
    traceback = validation.traceback_text(item.get("traceback"))
    duration = item.get("duration_seconds")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 <= duration < 10**9
    ):
        raise ValidationError(f"duration_seconds must be a number of seconds >= 0, got {duration!r}")
    detail = validation.detail(item.get("detail"))
    if outcome == OK and (error_type is not None or error is not None):
        raise ValidationError("outcome succeeded takes no error_type or error")
    forced = item.get("forced", False)
    if not isinstance(forced, bool):
        raise ValidationError(f"forced must be true or false, got {forced!r}")
    actor = item.get("actor")
    actor = default_actor if actor is None else validation.name("actor", actor)
    if outcome == OK and traceback is not None:
        raise ValidationError("outcome succeeded takes no traceback")
    duration_us = None if duration is None else round(duration * 1_000_000)
    return AttemptIn(at_us, outcome, started_at_us, error_type, error, forced, actor, traceback, duration_us,
                     detail)


def _annotation(item: Mapping[str, Any], latest: int) -> AnnotationIn:
    for required in ANNOTATION_FIELDS:
        if required not in item:
            raise ValidationError(f"{required} is required")
    author = validation.name("author", item["author"])
    text = validation.text("text", item["text"], required=True)
    assert text is not None
    return AnnotationIn(time_us(item["at"], "at", latest), author, text)


def _transition(item: Mapping[str, Any], default_actor: str, latest: int) -> TransitionIn:
    for required in ("at", "to_state"):
        if required not in item:
            raise ValidationError(f"{required} is required")
    at_us = time_us(item["at"], "at", latest)
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
    if number is not None:
        validation.integer("attempt_number", number)
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


class Checker:
    """Checks the records of one import: ``plain(raw, number)`` is ``to_plain(parse_record(...))`` with
    ``next_retry_at_us`` also filled in wherever it does not depend on the event id (a FAILED event under a
    policy without jitter), so the writer need not recompute it. Fast for the common shape (see above)."""

    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        # Event types already found valid: their policy, and its retry delays by budget failures when they
        # do not depend on the event id (else None).
        self._types: dict[str, tuple[RetryPolicy, dict[int, int] | None]] = {}
        self._encode = _c_encoder()
        self._payload_chars = ctx.max_payload_bytes // 4  # a text this long is small enough in any encoding

    def plain(self, raw: Any, number: int) -> tuple[Any, ...]:
        """Record ``number`` checked and normalized, as plain tuples (``ValidationError`` as parse_record)."""
        if type(raw) is dict:
            fast = self._fast(raw, number)
            if fast is not None:
                return fast
        record = parse_record(raw, self.ctx, number)
        next_retry = record.next_retry_at_us
        if next_retry is None and record.state == FAILED:
            policy = self.ctx.policies.for_type(record.event_type)
            delay = history.fixed_delay_us(policy, record.budget_failures)
            if delay is not None:  # a FAILED event's last attempt failed
                next_retry = record.attempts[-1].at_us + delay
        return (*to_plain(record)[:8], next_retry, record.budget_failures)

    def _event_type(self, value: str) -> tuple[RetryPolicy, dict[int, int] | None] | None:
        found = self._types.get(value)
        if found is None:
            if not validation.EVENT_TYPE_PATTERN.fullmatch(value):
                return None
            if len(self._types) >= 10_000:
                self._types.clear()
            policy = self.ctx.policies.for_type(value)
            found = self._types[value] = (policy, {} if policy.jitter == "none" else None)
        return found

    def _fast(self, raw: dict[Any, Any], number: int) -> tuple[Any, ...] | None:
        """The plain record when ``raw`` has the common shape and passes every check, else ``None``.

        Each test mirrors one of ``parse_record``'s, stricter where that is simpler (exact types); what is
        not handled here (``transitions``, str or dict subclasses, ...) is left to ``parse_record``. Every
        field is optional but ``event_type``, and an optional field given as null counts as absent.
        """
        if not raw.keys() <= _FAST_FIELDS:
            return None
        get = raw.get
        event_type = get("event_type")
        kind = self._event_type(event_type) if type(event_type) is str else None
        if kind is None:
            return None
        policy, delays = kind
        key = get("key")
        if key is None:
            key = uuid.uuid4().hex
        elif (type(key) is not str or not key or key.isspace() or len(key) > _MAX_KEY_CHARS
              or _unstorable(key)):
            return None
        latest = self.ctx.latest_us
        detected = get("detected_at")
        detected_at_us = self.ctx.now_us if detected is None else _fast_time(detected, latest)
        if detected_at_us is None:
            return None
        payload = get("payload")
        payload_json = "{}" if payload is None else self._fast_payload(payload)
        given = get("attempts")
        attempts = () if given is None else self._fast_attempts(given, detected_at_us)
        notes = get("annotations")
        annotations = () if notes is None else _fast_annotations(notes, latest)
        if payload_json is None or attempts is None or annotations is None:
            return None
        try:
            transitions, budget = history.derive_plain(attempts, detected_at_us, policy, self.ctx.actor)
        except ValidationError:
            return None
        state = transitions[-1][2]
        given_state = get("state")
        if given_state is not None and (type(given_state) is not str or given_state != state):
            return None
        given_retry = get("next_retry_at")
        if given_retry is not None:
            next_retry_us = _fast_next_retry(given_retry, state, attempts, latest + MAX_DELAY_US)
            if next_retry_us is None:
                return None
            return (
                number, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions,
                next_retry_us, budget,
            )  # fmt: skip
        next_retry_us = None
        if state == FAILED and delays is not None:  # a FAILED event's last attempt failed
            delay = delays.get(budget)
            if delay is None:
                delay = delays[budget] = history.next_retry_us(policy, budget, 0, 0)  # no jitter: any id
            next_retry_us = attempts[-1][0] + delay
        return (
            number, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions,
            next_retry_us, budget,
        )  # fmt: skip

    def _fast_payload(self, payload: Any) -> str | None:
        if type(payload) is not dict:
            return None
        encode = self._encode
        if encode is not None:
            try:
                text = "".join(encode(payload, 0))
            except Exception:  # any doubt: parse_record says what is wrong
                self._encode = _c_encoder()  # a failed encoding may leave its circular-check markers behind
                return None
            if _unstorable_json(text) or (
                len(text) > 2 * _MAX_DEPTH and text.count("{") + text.count("[") > _MAX_DEPTH
            ):  # maybe a NUL, a lone surrogate or nesting too deep (it takes a bracket per level, and its
                return None  # closing one: a short text cannot be): parse_record decides
            if len(text) <= self._payload_chars or len(text.encode("utf-8")) <= self.ctx.max_payload_bytes:
                return text
            return None
        try:
            return validation.payload(payload, self.ctx.max_payload_bytes)[1]
        except ValidationError:
            return None

    def _fast_attempts(self, given: Any, detected_at_us: int) -> tuple[tuple[Any, ...], ...] | None:
        if type(given) is not list:
            return None
        default_actor = self.ctx.actor
        latest = self.ctx.latest_us
        previous = detected_at_us
        attempts = []
        for item in given:
            if type(item) is not dict or not item.keys() <= _ATTEMPT_KEYS:
                return None
            get = item.get
            at_us = _fast_time(get("at"), latest)
            if at_us is None or at_us < previous:
                return None
            previous = at_us
            outcome = get("outcome")
            if type(outcome) is not str or outcome not in OUTCOMES:
                return None
            error_type = get("error_type")
            if error_type is not None and (
                type(error_type) is not str or not error_type or len(error_type) > _MAX_NAME_CHARS
                or _unclean_name(error_type)
            ):
                return None
            error = get("error")
            if error is not None and (type(error) is not str or len(error) > _MAX_ERROR_CHARS
                                      or _unstorable(error)):
                return None
            if outcome == OK and (error_type is not None or error is not None):
                return None
            started = get("started_at")
            started_at_us = None
            if started is not None:
                started_at_us = _fast_time(started, latest)
                if started_at_us is None or started_at_us > at_us:
                    return None
            forced = get("forced", False)
            if forced is not False and forced is not True:
                return None
            actor = get("actor")
            if actor is None:
                actor = default_actor
            elif (type(actor) is not str or len(actor) > _MAX_NAME_CHARS or not actor.strip()
                  or _unstorable(actor)):
                return None
            attempts.append(
                (at_us, outcome, started_at_us, error_type, error, forced, actor, None, None, None)
            )
        return tuple(attempts)


def _fast_annotations(given: Any, latest: int) -> tuple[tuple[Any, ...], ...] | None:
    if type(given) is not list:
        return None
    annotations = []
    for item in given:
        if type(item) is not dict or item.keys() != _ANNOTATION_KEYS:
            return None
        at_us, author, text = _fast_time(item["at"], latest), item["author"], item["text"]
        if (
            at_us is None
            or type(author) is not str
            or len(author) > _MAX_NAME_CHARS
            or not author.strip()
            or type(text) is not str
            or len(text) > _MAX_TEXT_CHARS
            or not text.strip()
            or _unstorable(author)
            or _unstorable(text)
        ):
            return None
        annotations.append((at_us, author, text))
    return tuple(annotations)


def _fast_next_retry(
    given: Any, state: str, attempts: tuple[tuple[Any, ...], ...], latest: int
) -> int | None:
    """A given ``next_retry_at`` that ``_next_retry`` accepts, else ``None``."""
    at_us = _fast_time(given, latest)
    if at_us is None or state != FAILED:
        return None
    last_us = attempts[-1][0]  # a FAILED event has a failed last attempt
    return at_us if last_us <= at_us <= last_us + MAX_DELAY_US else None


def _fast_time(value: Any, latest: int) -> int | None:
    """``time_us`` for the common case (a string ``datetime.fromisoformat`` reads, with a zone, within
    [1970, ``latest``]); ``None`` for anything else, which ``time_us`` then accepts or refuses."""
    if type(value) is not str:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    micros = (moment - EPOCH) // _ONE_US
    return micros if 0 <= micros <= latest else None


# ``validation.payload``'s encoder (the same options; a test compares them), as the C function that its
# ``encode`` builds anew on every call, built once: payloads are encoded once per imported record.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[Any, int], Sequence[str]] | None:
    """The C encoder of ``_PAYLOAD_ENCODER`` (chunks of text), or ``None`` where ``json`` has none."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    enc = _PAYLOAD_ENCODER
    try:
        return make(  # type: ignore[no-any-return]
            {}, enc.default, json.encoder.encode_basestring, enc.indent, enc.key_separator,
            enc.item_separator, enc.sort_keys, enc.skipkeys, enc.allow_nan,
        )  # fmt: skip
    except TypeError:  # another signature: use validation.payload
        return None


# The fields the fast path handles: all but ``transitions`` (a given history goes through the full checks).
_FAST_FIELDS = frozenset(EVENT_FIELDS) - {"transitions"}
_ATTEMPT_KEYS = frozenset(ATTEMPT_FIELDS[:7])  # traceback, duration, detail: the full checks
_ANNOTATION_KEYS = frozenset(ANNOTATION_FIELDS)
_MAX_KEY_CHARS, _MAX_NAME_CHARS = validation.MAX_KEY_CHARS, validation.MAX_NAME_CHARS
_MAX_ERROR_CHARS, _MAX_TEXT_CHARS = validation.MAX_ERROR_CHARS, validation.MAX_TEXT_CHARS
_MAX_DEPTH = validation.MAX_JSON_DEPTH
_unstorable = validation.UNSTORABLE.search  # NUL or a lone surrogate: the full checks say what is wrong
# ... in JSON text (ensure_ascii=False): a lone surrogate as it is, a NUL escaped (or a text that says so)
_unstorable_json = re.compile("[\ud800-\udfff]|\\\\u0000").search
# An error type the full checks would change: blank at either end, or holding NUL or a lone surrogate.
_unclean_name = re.compile("^\\s|\\s$|[\x00\ud800-\udfff]").search


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__ if not isinstance(value, str) else repr(value)
