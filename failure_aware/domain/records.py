"""The records the API returns: frozen dataclasses, built from rows, turned into JSON-ready dicts.

No database types leak out: times are aware UTC datetimes, states are ``State`` values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from failure_aware.domain.states import Outcome, State
from failure_aware.domain.timeutil import format_time


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, State | Outcome):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return value


class Record:
    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in RFC 3339 UTC with ``Z``)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The record as one line of JSON."""
        return json.dumps(self.as_dict(), sort_keys=False, ensure_ascii=False)


@dataclass(frozen=True)
class Event(Record):
    """An event with its current state (the projection)."""

    id: int
    event_type: str
    key: str
    payload: dict[str, Any]
    detected_at: datetime
    state: State
    attempt_count: int = 0
    next_retry_at: datetime | None = None
    last_error_type: str | None = None
    last_error: str | None = None
    claimed_by: str | None = None
    lease_expires_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Attempt(Record):
    """One try at an event and how it ended."""

    event_id: int
    number: int
    at: datetime
    outcome: Outcome
    started_at: datetime | None = None
    error_type: str | None = None
    error: str | None = None
    fingerprint: str | None = None
    forced: bool = False
    actor: str = "system"
    traceback: str | None = None  # the handler's, for a failure recorded by `run` or a worker
    duration_seconds: float | None = None  # how long the handler ran (`run`, worker)
    detail: dict[str, Any] | None = None  # a JSON object the caller or handler gave


@dataclass(frozen=True)
class Transition(Record):
    """One state change, as history records it."""

    event_id: int
    at: datetime
    from_state: State | None
    to_state: State
    actor: str
    reason: str
    attempt_number: int | None = None


@dataclass(frozen=True)
class Annotation(Record):
    """A note by a person, on an event or on a cluster's type and time span."""

    id: int
    author: str
    at: datetime
    text: str
    event_id: int | None = None
    cluster_event_type: str | None = None
    span_start: datetime | None = None
    span_end: datetime | None = None
    cluster_id: str | None = None


@dataclass(frozen=True)
class EventDetail(Record):
    """Everything known about one event: ``show``."""

    event: Event
    attempts: tuple[Attempt, ...]
    transitions: tuple[Transition, ...]
    annotations: tuple[Annotation, ...] = ()
    cluster_ids: tuple[str, ...] = ()
    incident_ids: tuple[str, ...] = ()  # the incidents (SPEC 13) of those clusters


@dataclass(frozen=True)
class Claim(Record):
    """A runner's hold on an IN_FLIGHT event; finishing needs its ``token``."""

    event: Event
    token: str
    worker: str
    claimed_at: datetime
    lease_expires_at: datetime
    attempt_number: int
    forced: bool = False


@dataclass(frozen=True)
class AttemptResult(Record):
    """What one attempt did: its record and the state it left the event in."""

    event_id: int
    attempt: Attempt
    state: State
    next_retry_at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class ImportReport(Record):
    """What ``import_events`` did: counts, and the lines it refused (line number, problem)."""

    imported: int = 0
    skipped_existing: int = 0
    invalid: tuple[tuple[int, str], ...] = field(default_factory=tuple)
    attempts: int = 0
    annotations: int = 0
