"""``/api/v1/incidents``: clusters of several event types that started together (SPEC 13), read only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from failure_aware.server.auth import ReadToken
from failure_aware.server.problems import responses
from failure_aware.server.routers.deps import LedgerDep
from failure_aware.server.schemas import MAX_PAGE, IncidentDetailOut, IncidentOut, Page

router = APIRouter(prefix="/incidents", tags=["incidents"])


@router.get("", response_model=Page[IncidentOut], responses=responses(401, 403, 422))
def list_incidents(
    _token: ReadToken,
    fa: LedgerDep,
    type: Annotated[str | None, Query(max_length=200)] = None,
    active: bool | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Stored incidents, newest first: with a cluster of one type, only active ones, or those that ended
    at or after ``since``. One page: ``has_more`` says whether more match (narrow with ``since``); the
    library has no position to continue from yet, so ``next_cursor`` is always null."""
    found = fa.incidents(event_type=type, active=bool(active), since=since, limit=limit + 1)
    return {"data": [i.as_dict() for i in found[:limit]], "next_cursor": None, "has_more": len(found) > limit}


@router.get("/{incident_id}", response_model=IncidentDetailOut, responses=responses(401, 403, 404, 422))
def show_incident(
    incident_id: Annotated[str, Path(min_length=1, max_length=64, description="An incident id (i_...)")],
    _token: ReadToken,
    fa: LedgerDep,
) -> dict[str, Any]:
    """One incident: its clusters (earliest first) and the fingerprints they share."""
    return fa.incident(incident_id).as_dict()
