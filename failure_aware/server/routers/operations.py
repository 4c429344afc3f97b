"""``/api/v1/revive`` (bulk revive), ``/api/v1/health`` and ``/api/v1/timeline``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from failure_aware.server.auth import OperateToken, ReadToken
from failure_aware.server.problems import responses
from failure_aware.server.routers.deps import LedgerDep
from failure_aware.server.schemas import BulkReviveIn, BulkReviveOut, HealthOut, TimelineOut

router = APIRouter(tags=["operations"])


@router.post("/revive", response_model=BulkReviveOut, responses=responses(400, 401, 403, 413, 422))
def bulk_revive(body: BulkReviveIn, token: OperateToken, fa: LedgerDep) -> dict[str, Any]:
    """Revive every event that died at or after ``since`` (of one ``type``, at most ``limit``), in one
    transaction; with ``dry_run`` nothing is written and the events that would be revived are listed."""
    ids = fa.revive_dead(
        since=body.since,
        event_type=body.type,
        dry_run=body.dry_run,
        limit=body.limit,
        actor=token.name,
        reason=f"bulk revive by {token.name}",
    )
    return {"dry_run": body.dry_run, "count": len(ids), "event_ids": ids}


@router.get("/health", response_model=HealthOut, responses=responses(401, 403, 422))
def health(
    _token: ReadToken,
    fa: LedgerDep,
    type: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The health report (SPEC 6): the verdict is in the body; the status is 200 whatever it is."""
    return fa.health(event_type=type).as_dict()


@router.get("/timeline", response_model=TimelineOut, responses=responses(401, 403, 422))
def timeline(
    _token: ReadToken,
    fa: LedgerDep,
    type: Annotated[str | None, Query(max_length=200)] = None,
    buckets: Annotated[int, Query(ge=1, le=1000)] = 60,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Failures per time bucket per event type, with the clusters' spans (``clusters --timeline``)."""
    return fa.timeline(event_type=type, buckets=buckets, since=since, until=until).as_dict()
