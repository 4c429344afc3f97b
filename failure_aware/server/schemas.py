"""The contract of the HTTP API: pydantic models of every request and response (the OpenAPI document
follows from them).

Requests are strict where JSON is ambiguous (no numbers for times, no strings for numbers or booleans) and
refuse unknown fields, so a typo is a 422 rather than a silently ignored option. What a value *means*
(an event type's characters, a time's bounds, a payload's size) is checked by the ``Ledger``, the single
validator, whose ``ValidationError`` becomes a 422 too. Responses mirror the library's records
(``as_dict()``): times are RFC 3339 UTC strings with ``Z``; they allow extra fields, so a newer library
adding one never breaks the response.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from failure_aware.diagnostics.health_report import Verdict
from failure_aware.domain.states import State

MAX_INT = 2**63 - 1
MAX_PAGE = 500


def _text_time(value: object) -> object:
    # JSON has no time type: a time is an RFC 3339 string, never a number of seconds.
    if not isinstance(value, str | datetime):
        raise ValueError("a time is an RFC 3339 string such as 2026-01-02T04:45:54Z")
    return value


def _failure_text(value: object) -> object:
    # What a failure produced is recorded, never refused (SPEC 3). A lone surrogate (valid in a JSON
    # escape, not in Unicode) cannot pass pydantic as it is: it becomes U+FFFD here, as the Ledger would
    # make it; the Ledger applies the rest of the rule (NUL).
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


InTime = Annotated[datetime, BeforeValidator(_text_time)]
FailureText = Annotated[StrictStr, BeforeValidator(_failure_text)]
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Seconds = Annotated[float, Field(gt=0, le=7 * 86400, allow_inf_nan=False, strict=True)]
RetryAfter = Annotated[float, Field(ge=0, le=MAX_INT, allow_inf_nan=False, strict=True)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests ---------------------------------------------------------------------------------------------
class EventIn(_In):
    """Detect an event (idempotent by ``(event_type, key)``)."""

    event_type: Annotated[StrictStr, Field(max_length=200)]
    key: Annotated[StrictStr, Field(max_length=500)] | None = None
    payload: dict[str, Any] | None = None
    at: InTime | None = None


class OutcomeIn(_In):
    """The outcome of an attempt: ``succeeded`` or ``failed``, with what the failure said."""

    outcome: Literal["succeeded", "failed"]
    error_type: FailureText | None = None  # lengths: the Ledger's rule (the body limit bounds them here)
    error: FailureText | None = None
    at: InTime | None = None
    permanent: StrictBool = False
    retry_after: RetryAfter | InTime | None = None
    detail: dict[str, Any] | None = None

    def outcome_args(self) -> dict[str, Any]:
        """The keyword arguments ``Ledger.finish`` and ``Ledger.report`` share, after the event or claim."""
        return {"ok": self.outcome == "succeeded", "error_type": self.error_type, "error": self.error,
                "at": self.at, "permanent": self.permanent, "retry_after": self.retry_after,
                "detail": self.detail}


class AttemptIn(OutcomeIn):
    """An attempt the caller ran itself (claim and finish in one step); ``force`` runs a FAILED event
    before its ``next_retry_at``."""

    force: StrictBool = False


class ClaimIn(_In):
    """Claim due events for a remote runner (the token's name is the worker)."""

    types: Annotated[list[Annotated[StrictStr, Field(max_length=200)]], Field(max_length=50)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE)] = 10
    lease_seconds: Seconds = 300.0


class NoteIn(_In):
    """A note (an annotation): additive, never changes history."""

    text: Annotated[StrictStr, Field(max_length=64 * 1024)]


class ReasonIn(_In):
    """Why an operator revives or buries an event."""

    reason: Annotated[StrictStr, Field(max_length=64 * 1024)] | None = None


class BulkReviveIn(_In):
    """Revive every event that died at or after ``since`` (of one type); ``dry_run`` only counts them."""

    since: InTime
    type: Annotated[StrictStr, Field(max_length=200)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_INT)] | None = None
    dry_run: StrictBool


class CorrelateIn(_In):
    """Bring the failure clusters up to date; ``rebuild`` recomputes them all."""

    rebuild: StrictBool = False


# -- responses --------------------------------------------------------------------------------------------
class Problem(BaseModel):
    """An error (RFC 9457 problem details) with ``code``, the name of the error in the library's tree."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str


class EventOut(_Out):
    """An event with its current state."""

    id: int
    event_type: str
    key: str
    payload: dict[str, Any]
    detected_at: Time
    state: State
    attempt_count: int
    next_retry_at: Time | None = None
    last_error_type: str | None = None
    last_error: str | None = None
    claimed_by: str | None = None
    lease_expires_at: Time | None = None
    updated_at: Time | None = None


class AttemptOut(_Out):
    """One try at an event and how it ended."""

    event_id: int
    number: int
    at: Time
    outcome: Literal["succeeded", "failed", "abandoned"]
    started_at: Time | None = None
    error_type: str | None = None
    error: str | None = None
    fingerprint: str | None = None
    forced: bool = False
    actor: str
    traceback: str | None = None
    duration_seconds: float | None = None
    detail: dict[str, Any] | None = None


class TransitionOut(_Out):
    """One state change."""

    event_id: int
    at: Time
    from_state: State | None = None
    to_state: State
    actor: str
    reason: str
    attempt_number: int | None = None


class AnnotationOut(_Out):
    """A note on an event, or on a cluster's type and span."""

    id: int
    author: str
    at: Time
    text: str
    event_id: int | None = None
    cluster_event_type: str | None = None
    span_start: Time | None = None
    span_end: Time | None = None
    cluster_id: str | None = None


class EventDetailOut(_Out):
    """An event with its attempts, transitions, notes and the clusters holding its failures."""

    event: EventOut
    attempts: list[AttemptOut]
    transitions: list[TransitionOut]
    annotations: list[AnnotationOut]
    cluster_ids: list[str]


class AttemptResultOut(_Out):
    """What an attempt did: its record and the state it left the event in."""

    event_id: int
    attempt: AttemptOut
    state: State
    next_retry_at: Time | None = None
    reason: str


class ClaimOut(_Out):
    """A hold on an IN_FLIGHT event: finish it with ``POST /api/v1/claims/{token}`` before the lease ends."""

    event: EventOut
    token: str
    worker: str
    claimed_at: Time
    lease_expires_at: Time
    attempt_number: int
    forced: bool


class ClaimsOut(BaseModel):
    """The claims made (none when nothing is due)."""

    data: list[ClaimOut]


class FingerprintCountOut(_Out):
    """A frequent fingerprint of a cluster, with an example message."""

    fingerprint: str | None = None
    count: int
    example: str | None = None


class ClusterOut(_Out):
    """A burst of failures of one event type."""

    id: str
    event_type: str
    window_start: Time
    window_end: Time
    failure_count: int
    event_count: int
    top_fingerprints: list[FingerprintCountOut]
    window_seconds: int
    min_failures: int
    min_events: int
    active: bool


class ClusterEventOut(_Out):
    """A member event of a cluster."""

    event_id: int
    key: str
    state: State
    failures: int


class ClusterDetailOut(_Out):
    """A cluster with its rule, members, failures inside its window and notes."""

    cluster: ClusterOut
    rule: str
    events: list[ClusterEventOut]
    attempts: list[AttemptOut]
    annotations: list[AnnotationOut]
    attempts_truncated: bool


class CorrelateOut(_Out):
    """What a correlate run did."""

    mode: Literal["incremental", "rebuild"]
    window_seconds: int
    min_failures: int
    min_events: int
    added: int
    removed: int
    changed: int
    unchanged: int
    failures_read: int
    types_touched: list[str]
    clusters_total: int
    last_attempt_id: int


class TimelineRowOut(_Out):
    """Failures per bucket of one event type, with its clusters' spans."""

    event_type: str
    counts: list[int]
    clusters: list[ClusterOut]


class TimelineOut(_Out):
    """Failures per time bucket per event type; bucket i covers [start + i*bucket_seconds, ...)."""

    start: Time | None = None
    end: Time | None = None
    bucket_seconds: float
    rows: list[TimelineRowOut]


class ReasonOut(_Out):
    """One finding behind the verdict."""

    verdict: Verdict
    rule: str
    message: str
    event_type: str | None = None


class MarkOut(_Out):
    """An event the health report points at."""

    event_id: int
    event_type: str
    state: State
    attempt_count: int
    since: Time | None = None
    age_seconds: float | None = None
    claimed_by: str | None = None


class ClusterMarkOut(_Out):
    """An active cluster."""

    id: str
    event_type: str
    window_start: Time
    window_end: Time
    failure_count: int
    event_count: int


class FiguresOut(_Out):
    """The health figures of all event types or of one."""

    event_type: str | None = None
    verdict: Verdict
    reasons: list[ReasonOut]
    counts: dict[str, int]
    total_events: int
    attempts: int
    failures: int
    failure_rate: float | None = None
    retries_due: int
    overdue_retries: int
    most_overdue: MarkOut | None = None
    stuck_claims: int
    oldest_stuck: MarkOut | None = None
    dead: int
    dead_recent: int
    oldest_unresolved: MarkOut | None = None
    most_retried: MarkOut | None = None
    active_clusters: list[ClusterMarkOut]


class HealthOut(_Out):
    """The health report (SPEC 6): the verdict in the body, always with status 200."""

    verdict: Verdict
    reasons: list[ReasonOut]
    checked_at: Time
    event_type: str | None = None
    rules: dict[str, Any]
    cluster_window_seconds: float | None = None
    overall: FiguresOut
    by_type: list[FiguresOut]
    exit_code: int


class SharedFingerprintOut(_Out):
    """An error fingerprint shared by several clusters of an incident: the evidence."""

    fingerprint: str
    clusters: int
    failures: int
    example: str | None = None


class IncidentOut(_Out):
    """Clusters of several event types that started together (SPEC 13)."""

    id: str
    start: Time
    end: Time
    cluster_count: int
    failure_count: int
    event_count: int
    event_types: list[str]
    cluster_ids: list[str]
    shared_fingerprints: list[SharedFingerprintOut]
    window_seconds: int
    active: bool


class IncidentDetailOut(_Out):
    """An incident with its clusters, earliest first."""

    incident: IncidentOut
    clusters: list[ClusterOut]


class BulkReviveOut(BaseModel):
    """The events revived (or, with ``dry_run``, that would be)."""

    dry_run: bool
    count: int
    event_ids: list[int]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: pass ``next_cursor`` as ``cursor`` for the next (it carries the filters)."""

    data: list[T]
    next_cursor: str | None
    has_more: bool
