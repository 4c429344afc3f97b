"""``/api/v1/events``: detect, list (filtered, cursor pages), show, report an outcome, notes, revive, bury."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import parse_time
from failure_aware.server import pagination
from failure_aware.server.auth import OperateToken, ReadToken, RecordToken
from failure_aware.server.problems import responses
from failure_aware.server.routers.deps import LedgerDep, reply, time_text
from failure_aware.server.schemas import (
    MAX_INT,
    MAX_PAGE,
    AnnotationOut,
    AttemptIn,
    AttemptResultOut,
    EventDetailOut,
    EventIn,
    EventOut,
    NoteIn,
    Page,
    ReasonIn,
)

router = APIRouter(prefix="/events", tags=["events"])
EventId = Annotated[int, Path(ge=1, le=MAX_INT, description="The event's id")]

@router.post(
    "",
    status_code=201,
    response_model=EventOut,
    responses={
        200: {"model": EventOut, "description": "The event of this key existed: unchanged"},
        **responses(400, 401, 403, 413, 422),
    },
)
def detect(body: EventIn, token: RecordToken, fa: LedgerDep) -> Response:
    """Detect an event: 201 with the new event, or 200 with the existing one of this ``(event_type, key)``
    (nothing written): retrying a POST with the same key is safe."""
    event, created = fa.detect_created(
        body.event_type, body.payload, key=body.key, at=body.at, actor=token.name
    )
    return reply(event.as_dict(), status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("", response_model=Page[EventOut], responses=responses(401, 403, 422))
def list_events(
    fa: LedgerDep,
    _token: ReadToken,
    state: State | None = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    fingerprint: Annotated[str | None, Query(max_length=200)] = None,
    cluster: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=pagination.MAX_CURSOR_CHARS)] = None,
) -> Response:
    """Events, newest first, filtered by state, type, detection time, a failure's fingerprint or a
    cluster. A filter that matches nothing gives an empty page. ``next_cursor`` carries the filters."""
    filters, position = pagination.merge(
        {
            "state": state.value if state else None,
            "type": type,
            "since": time_text(since),
            "until": time_text(until),
            "fingerprint": fingerprint,
            "cluster": cluster,
        },
        cursor,
    )
    if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
        raise ValidationError("cursor is not one this API gave out; start again without it")
    events = fa.events(
        state=filters.get("state"),
        event_type=filters.get("type"),
        limit=limit + 1,
        before_id=position,
        since=_time(filters.get("since")),
        until=_time(filters.get("until")),
        fingerprint=filters.get("fingerprint"),
        cluster_id=filters.get("cluster"),
    )
    more = len(events) > limit
    events = events[:limit]
    return reply({
        "data": [e.as_dict() for e in events],
        "next_cursor": pagination.encode(filters, events[-1].id) if more else None,
        "has_more": more,
    })


def _time(value: Any) -> datetime | None:
    return parse_time(value, field="cursor") if isinstance(value, str) else None


@router.get("/{event_id}", response_model=EventDetailOut, responses=responses(401, 403, 404, 422))
def show(event_id: EventId, _token: ReadToken, fa: LedgerDep) -> dict[str, Any]:
    """The event with its attempts, transitions, notes and the ids of the clusters holding its failures."""
    return fa.show(event_id).as_dict()


@router.post(
    "/{event_id}/attempts",
    status_code=201,
    response_model=AttemptResultOut,
    responses=responses(400, 401, 403, 404, 409, 413, 422),
)
def report(event_id: EventId, body: AttemptIn, token: RecordToken, fa: LedgerDep) -> Response:
    """Record an attempt the caller ran itself and its outcome (409 when the state forbids it, or a FAILED
    event's retry time has not come and ``force`` is not set)."""
    result = fa.report(event_id, **body.outcome_args(), force=body.force, actor=token.name)
    return reply(result.as_dict(), status.HTTP_201_CREATED)


@router.post(
    "/{event_id}/annotations",
    status_code=201,
    response_model=AnnotationOut,
    responses=responses(400, 401, 403, 404, 413, 422),
)
def annotate(event_id: EventId, body: NoteIn, token: OperateToken, fa: LedgerDep) -> dict[str, Any]:
    """Add a note to the event, by the token's name."""
    return fa.annotate(event_id, body.text, author=token.name).as_dict()


@router.post(
    "/{event_id}/revive", response_model=EventOut, responses=responses(400, 401, 403, 404, 409, 413, 422)
)
def revive(
    event_id: EventId, token: OperateToken, fa: LedgerDep, body: ReasonIn | None = None
) -> dict[str, Any]:
    """Bring a DEAD event back to PENDING (409 from any other state)."""
    reason = body.reason if body and body.reason else f"revived by {token.name}"
    return fa.revive(event_id, actor=token.name, reason=reason).as_dict()


@router.post(
    "/{event_id}/bury", response_model=EventOut, responses=responses(400, 401, 403, 404, 409, 413, 422)
)
def bury(
    event_id: EventId, token: OperateToken, fa: LedgerDep, body: ReasonIn | None = None
) -> dict[str, Any]:
    """Give up on a FAILED event: it becomes DEAD (409 from any other state)."""
    reason = body.reason if body and body.reason else f"given up by {token.name}"
    return fa.bury(event_id, actor=token.name, reason=reason).as_dict()


__all__ = ["router"]
