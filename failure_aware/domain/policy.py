"""Retry policy (SPEC section 4): pure functions, no I/O, the clock passed in.

A ``RetryPolicy`` says how many failures an event may have and how long to wait after each one.
``decide_after_failure`` turns a failure into a ``Decision``: DEAD (with the reason) or FAILED with a
``next_retry_at``. Nothing here retries anything: it only computes when a retry becomes due.

A ``PolicySet`` holds the default policy and per-event-type overrides; ``PolicySet.from_mapping`` reads the
``[retry]`` table of the configuration (see ``failure_aware.config`` for the layout).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, get_args

from failure_aware.domain.durations import format_duration, parse_duration
from failure_aware.domain.errors import ValidationError

__all__ = [
    "MAX_DELAY_SECONDS",
    "Backoff",
    "Decision",
    "Jitter",
    "PolicySet",
    "RetryPolicy",
    "backoff_delay_seconds",
    "decide_after_failure",
    "jitter_fraction",
    "nominal_delay_seconds",
]

Backoff = Literal["exponential", "fixed", "schedule"]
Jitter = Literal["none", "full", "equal"]

#: Upper bound on any configured delay: a policy that waits more than a year is a typo, and the bound keeps
#: ``failed_at + delay`` far from datetime overflow.
MAX_DELAY_SECONDS = 365 * 86400.0

_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")


def _check_delay(name: str, value: object) -> float:
    """Return ``value`` as a delay in seconds, or raise ``ValidationError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_DELAY_SECONDS:  # also refuses NaN
        raise ValidationError(f"{name} must be between 0 and {MAX_DELAY_SECONDS:g} (365 days), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How often an event may fail and how long to wait after each failure.

    ``non_retryable`` error types go straight to DEAD. ``schedule_seconds`` is used only with
    ``backoff="schedule"`` (and required then). ``max_delay_seconds`` caps the exponential and fixed delays;
    a schedule's entries are used as written. Invalid values raise ``ValidationError``.
    """

    max_attempts: int = 6
    non_retryable: frozenset[str] = frozenset()
    backoff: Backoff = "exponential"
    base_seconds: float = 10.0
    factor: float = 3.0
    max_delay_seconds: float = 3600.0
    schedule_seconds: tuple[float, ...] = ()
    jitter: Jitter = "none"
    #: The cap on a failure's ``retry_after`` (SPEC 4): a failure may push its next try this far at most.
    max_retry_after_seconds: float = 86400.0

    def __post_init__(self) -> None:
        """Validate every field; normalise collections to ``frozenset`` / ``tuple`` of floats."""
        attempts, names, schedule = self.max_attempts, self.non_retryable, self.schedule_seconds
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValidationError(f"max_attempts must be an integer >= 1, got {attempts!r}")
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ValidationError(f"non_retryable must be a set of error type names, got {names!r}")
        name_list = list(names)  # iterate once: names may be a generator
        if not all(isinstance(name, str) and name for name in name_list):
            raise ValidationError(f"non_retryable must hold non-empty error type names, got {name_list!r}")
        for name, allowed in (("backoff", get_args(Backoff)), ("jitter", get_args(Jitter))):
            value = getattr(self, name)
            if value not in allowed:
                raise ValidationError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor < math.inf:
            raise ValidationError(f"factor must be a finite number >= 1, got {factor!r}")
        if isinstance(schedule, str) or not isinstance(schedule, Iterable):
            raise ValidationError(f"schedule_seconds must be a sequence of delays, got {schedule!r}")
        schedule = tuple(_check_delay("schedule_seconds entry", delay) for delay in schedule)
        if self.backoff == "schedule" and not schedule:
            raise ValidationError("backoff 'schedule' needs a non-empty schedule (schedule_seconds)")
        if self.backoff != "schedule" and schedule:
            raise ValidationError(f"a schedule is given but backoff is {self.backoff!r}; use 'schedule'")
        normalised = {
            "non_retryable": frozenset(name_list),
            "base_seconds": _check_delay("base_seconds", self.base_seconds),
            "max_delay_seconds": _check_delay("max_delay_seconds", self.max_delay_seconds),
            "max_retry_after_seconds": _check_delay("max_retry_after_seconds", self.max_retry_after_seconds),
            "factor": float(factor),
            "schedule_seconds": schedule,
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)


def nominal_delay_seconds(policy: RetryPolicy, failure_number: int) -> float:
    """Return the delay after failure ``n = failure_number`` before jitter (SPEC section 4).

    - exponential: ``min(max_delay, base * factor ** (n - 1))``
    - fixed: ``min(max_delay, base)``
    - schedule: ``schedule[n - 1]``, the last entry repeating for larger ``n`` (not capped by max_delay)
    """
    if isinstance(failure_number, bool) or not isinstance(failure_number, int) or failure_number < 1:
        raise ValidationError(f"failure_number must be an integer >= 1, got {failure_number!r}")
    if policy.backoff == "schedule":
        return policy.schedule_seconds[min(failure_number, len(policy.schedule_seconds)) - 1]
    base, cap, exponent = policy.base_seconds, policy.max_delay_seconds, failure_number - 1
    if policy.backoff == "fixed" or exponent == 0 or base == 0 or policy.factor == 1:
        return min(cap, base)
    if base >= cap:
        return cap
    # Cap before exponentiating: past the exponent where base * factor ** e reaches the cap (plus one for
    # rounding), the answer is the cap, and factor ** e for a large e would overflow.
    if exponent > math.log(cap / base) / math.log(policy.factor) + 1:
        return cap
    try:
        return min(cap, base * policy.factor**exponent)
    except OverflowError:  # only for extreme base/cap ratios
        return cap


def jitter_fraction(event_id: int, failure_number: int) -> float:
    """Return a uniform draw in ``[0, 1)`` seeded by ``(event_id, failure_number)``.

    ``u = (first 8 bytes of blake2b(f"{event_id}:{failure_number}"), big-endian) >> 11) / 2**53``: the same
    on every process, platform and Python version (unlike ``hash()``), so a schedule can be reproduced.
    """
    digest = hashlib.blake2b(f"{event_id}:{failure_number}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2**53


def backoff_delay_seconds(policy: RetryPolicy, failure_number: int, event_id: int) -> float:
    """Return the seconds to wait after failure ``n = failure_number`` of event ``event_id``.

    With ``d = nominal_delay_seconds(policy, n)`` and ``u = jitter_fraction(event_id, n)`` in ``[0, 1)``:

    - jitter "none":  ``d``
    - jitter "full":  ``u * d``              (uniform in ``[0, d]``)
    - jitter "equal": ``d / 2 + u * d / 2``  (uniform in ``[d/2, d]``)
    """
    delay = nominal_delay_seconds(policy, failure_number)
    if policy.jitter == "none":
        return delay
    fraction = jitter_fraction(event_id, failure_number)
    if policy.jitter == "full":
        return fraction * delay
    half = delay / 2
    return half + fraction * half


@dataclass(frozen=True)
class Decision:
    """What a failure leads to: DEAD with a reason, or FAILED with a retry due at ``next_retry_at``.

    ``next_retry_at`` and ``delay_seconds`` are set exactly when ``dead`` is false.
    """

    dead: bool
    reason: str
    next_retry_at: datetime | None = None
    delay_seconds: float | None = None

    def __post_init__(self) -> None:
        """Refuse a decision that is both dead and scheduled, or neither."""
        if self.dead != (self.next_retry_at is None) or self.dead != (self.delay_seconds is None):
            raise ValidationError("a Decision has next_retry_at and delay_seconds exactly when not dead")

    @property
    def retry(self) -> bool:
        """True when the event is to be retried (state FAILED), false when it is DEAD."""
        return not self.dead


def decide_after_failure(
    policy: RetryPolicy, failure_number: int, error_type: str | None, failed_at: datetime, event_id: int,
    *, permanent: bool = False, retry_after_seconds: float | None = None,
) -> Decision:
    """Decide what follows failure ``failure_number`` (1-based, within the current retry budget).

    DEAD when the failure is ``permanent``, ``error_type`` is in ``policy.non_retryable`` or
    ``failure_number >= policy.max_attempts``; otherwise a retry at ``failed_at + d`` with
    ``d = backoff_delay_seconds(policy, failure_number, event_id)``, or, when the failure says
    ``retry_after_seconds`` (as an HTTP ``Retry-After``), ``failed_at + max(d, min(retry_after,
    policy.max_retry_after_seconds))``.
    ``failed_at`` must be timezone-aware; ``next_retry_at`` is returned in UTC. After an operator revive the
    budget restarts, so ``failure_number`` starts again at 1.
    """
    if failed_at.tzinfo is None or failed_at.utcoffset() is None:
        raise ValidationError(f"failed_at must be timezone-aware, got {failed_at.isoformat()} without a zone")
    delay = backoff_delay_seconds(policy, failure_number, event_id)  # validates failure_number
    if permanent:
        return Decision(dead=True, reason="permanent failure")
    if error_type is not None and error_type in policy.non_retryable:
        return Decision(dead=True, reason=f"non-retryable error type {error_type}")
    if failure_number >= policy.max_attempts:
        return Decision(dead=True, reason=f"max_attempts ({policy.max_attempts}) reached")
    asked = ""
    if retry_after_seconds is not None:
        if not 0 <= retry_after_seconds < math.inf:  # also refuses NaN
            raise ValidationError(f"retry_after must be seconds >= 0, got {retry_after_seconds!r}")
        wanted = min(float(retry_after_seconds), policy.max_retry_after_seconds)
        if wanted > delay:
            delay, asked = wanted, " (as the failure asked: retry_after)"
    next_retry_at = failed_at.astimezone(UTC) + timedelta(seconds=delay)
    reason = f"failure {failure_number} of {policy.max_attempts}; retry in {format_duration(delay)}{asked}"
    return Decision(dead=False, reason=reason, next_retry_at=next_retry_at, delay_seconds=delay)


@dataclass(frozen=True)
class PolicySet:
    """The default ``RetryPolicy`` plus per-event-type overrides (each a complete policy)."""

    default: RetryPolicy = field(default_factory=RetryPolicy)
    overrides: Mapping[str, RetryPolicy] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        """Check the types and freeze ``overrides`` (a read-only copy)."""
        if not isinstance(self.default, RetryPolicy):
            raise ValidationError(f"default must be a RetryPolicy, got {self.default!r}")
        for event_type, policy in self.overrides.items():
            where = f"policy override for {event_type!r}"
            if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
                raise ValidationError(f"{where}: an event type is 1-200 characters of [A-Za-z0-9_.:/-]")
            if not isinstance(policy, RetryPolicy):
                raise ValidationError(f"{where} must be a RetryPolicy, got {policy!r}")
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    def for_type(self, event_type: str) -> RetryPolicy:
        """Return the policy for ``event_type``: its override, else the default."""
        return self.overrides.get(event_type, self.default)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, key_prefix: str = "retry") -> PolicySet:
        """Build a policy set from a ``[retry]`` table as parsed from TOML (or written as a dict in code).

        Keys: ``max_attempts``, ``backoff``, ``base``, ``factor``, ``max_delay``, ``jitter``,
        ``non_retryable``, ``schedule`` (durations as numbers of seconds or strings like ``"10s"``), and
        ``types``: a table of per-event-type tables with the same keys (except ``types``). Keys an override
        leaves out inherit the default's values; a ``schedule`` implies ``backoff = "schedule"``.
        Errors name the key, prefixed with ``key_prefix``.
        """
        default = _policy_from_table(RetryPolicy(), table, key_prefix, allow_types=True)
        types = table.get("types", {})
        if not isinstance(types, Mapping):
            raise ValidationError(f"{key_prefix}.types must be a table of event types, got {types!r}")
        overrides: dict[str, RetryPolicy] = {}
        for event_type, sub_table in types.items():
            where = f'{key_prefix}.types."{event_type}"'
            if not isinstance(sub_table, Mapping):
                raise ValidationError(f"{where} must be a table, got {sub_table!r}")
            if not _EVENT_TYPE.fullmatch(event_type):
                raise ValidationError(f"{where}: an event type is 1-200 characters of [A-Za-z0-9_.:/-]")
            overrides[event_type] = _policy_from_table(default, sub_table, where, allow_types=False)
        return cls(default=default, overrides=overrides)


_POLICY_KEYS = (
    "max_attempts",
    "backoff",
    "base",
    "factor",
    "max_delay",
    "max_retry_after",
    "jitter",
    "non_retryable",
    "schedule",
)


def _policy_from_table(
    inherited: RetryPolicy, table: Mapping[str, Any], where: str, *, allow_types: bool
) -> RetryPolicy:
    """Return ``inherited`` with the keys of one ``[retry]``-style table applied."""
    if not isinstance(table, Mapping):
        raise ValidationError(f"{where} must be a table, got {table!r}")
    known = (*_POLICY_KEYS, "types") if allow_types else _POLICY_KEYS
    for key in table:
        if key not in known:
            raise ValidationError(f"{where}.{key}: unknown key (known: {', '.join(known)})")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}"
        if key == "max_attempts":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name} must be an integer, got {value!r}")
            changes["max_attempts"] = value
        elif key in ("backoff", "jitter"):
            if not isinstance(value, str):
                raise ValidationError(f"{name} must be a string, got {value!r}")
            changes[key] = value
        elif key in ("base", "max_delay", "max_retry_after"):
            changes[f"{key}_seconds"] = _duration(name, value)
        elif key == "factor":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"{name} must be a number, got {value!r}")
            changes["factor"] = value
        elif key == "non_retryable":
            if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
                raise ValidationError(f"{name} must be a list of error type names, got {value!r}")
            changes["non_retryable"] = frozenset(value)
        elif key == "schedule":
            if not isinstance(value, list | tuple):
                raise ValidationError(f"{name} must be a list of durations, got {value!r}")
            changes["schedule_seconds"] = tuple(_duration(f"{name}[{i}]", v) for i, v in enumerate(value))
    if "schedule_seconds" in changes:
        if changes.get("backoff", "schedule") != "schedule":
            backoff = changes["backoff"]
            raise ValidationError(f"{where}: a schedule implies backoff 'schedule', got {backoff!r}")
        changes["backoff"] = "schedule"
    elif changes.get("backoff", "schedule") != "schedule":
        changes["schedule_seconds"] = ()  # switching away from an inherited schedule drops it
    try:
        return replace(inherited, **changes)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from exc


def _duration(name: str, value: Any) -> float:
    """Parse a configured duration (any TOML value; parse_duration refuses wrong types), naming the key."""
    try:
        return parse_duration(value)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc}") from exc


# Whether a failure kills the event depends on the policy, the failure's number and its error type, never on
# the time; nor does the delay unless the policy jitters by event id. Readers that judge millions of recorded
# failures (an import deriving transitions, verify replaying them) decide once per such triple, at the epoch
# for event id 0. Keyed by ``id(policy)`` because hashing a policy costs more than deciding; the entry keeps
# the policy, and a different policy that reuses the id is detected and decided again.
_CACHE_LIMIT = 10_000
_decisions: dict[tuple[int, int, str | None], tuple[RetryPolicy, Decision]] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def decide_cached(policy: RetryPolicy, failure_number: int, error_type: str | None) -> Decision:
    """``decide_after_failure`` at the epoch for event id 0, cached (see above): its ``reason`` (why DEAD)
    holds for any event and time; its delay (``next_retry_at`` - epoch) for any when ``jitter`` is "none"."""
    key = (id(policy), failure_number, error_type)
    found = _decisions.get(key)
    if found is None or found[0] is not policy:
        if len(_decisions) >= _CACHE_LIMIT:
            _decisions.clear()
        decision = decide_after_failure(policy, failure_number, error_type, _EPOCH, 0)
        found = _decisions[key] = (policy, decision)
    return found[1]
