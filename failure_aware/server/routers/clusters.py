"""``/api/v1/clusters``: failure clusters (list, one), notes on them; ``/api/v1/correlate`` recomputes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.timeutil import parse_time
from failure_aware.server import pagination
from failure_aware.server.auth import OperateToken, ReadToken
from failure_aware.server.problems import responses
from failure_aware.server.routers.deps import LedgerDep, time_text
from failure_aware.server.schemas import (
    MAX_PAGE,
    AnnotationOut,
    ClusterDetailOut,
    ClusterOut,
    CorrelateIn,
    CorrelateOut,
    NoteIn,
    Page,
)

router = APIRouter(tags=["clusters"])
ClusterId = Annotated[str, Path(min_length=1, max_length=64, description="A cluster id (c_...)")]


@router.get("/clusters", response_model=Page[ClusterOut], responses=responses(401, 403, 422))
def list_clusters(
    fa: LedgerDep,
    _token: ReadToken,
    type: Annotated[str | None, Query(max_length=200)] = None,
    active: bool | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=pagination.MAX_CURSOR_CHARS)] = None,
) -> dict[str, Any]:
    """Stored clusters, newest first: of one type, only active ones, or those that ended at or after
    ``since``. ``next_cursor`` carries the filters."""
    filters, position = pagination.merge(
        {"type": type, "active": True if active else None, "since": time_text(since)}, cursor
    )
    after = None
    if position is not None:
        if not (
            isinstance(position, list) and len(position) == 3 and all(isinstance(p, str) for p in position)
        ):
            raise ValidationError("cursor is not one this API gave out; start again without it")
        after = (parse_time(position[0], field="cursor"), position[1], position[2])
    since_value = filters.get("since")
    clusters = fa.clusters(
        event_type=filters.get("type"),
        active=bool(filters.get("active")),
        since=parse_time(since_value, field="cursor") if isinstance(since_value, str) else None,
        limit=limit + 1,
        after=after,
    )
    more = len(clusters) > limit
    clusters = clusters[:limit]
    last = clusters[-1] if clusters else None
    next_cursor = None
    if more and last is not None:
        next_cursor = pagination.encode(filters, [time_text(last.window_start), last.event_type, last.id])
    return {"data": [c.as_dict() for c in clusters], "has_more": more, "next_cursor": next_cursor}


@router.get(
    "/clusters/{cluster_id}", response_model=ClusterDetailOut, responses=responses(401, 403, 404, 422)
)
def show_cluster(cluster_id: ClusterId, _token: ReadToken, fa: LedgerDep) -> dict[str, Any]:
    """One cluster: the rule that made it, its members, their failures in its window and its notes."""
    return fa.cluster(cluster_id).as_dict()


@router.post(
    "/clusters/{cluster_id}/annotations",
    status_code=201,
    response_model=AnnotationOut,
    responses=responses(400, 401, 403, 404, 413, 422),
)
def annotate_cluster(
    cluster_id: ClusterId, body: NoteIn, token: OperateToken, fa: LedgerDep
) -> dict[str, Any]:
    """Add a note to a cluster (kept against its type and span: it survives any rebuild)."""
    return fa.annotate_cluster(cluster_id, body.text, author=token.name).as_dict()


@router.post("/correlate", response_model=CorrelateOut, responses=responses(400, 401, 403, 413, 422))
def correlate(_token: OperateToken, fa: LedgerDep, body: CorrelateIn | None = None) -> dict[str, Any]:
    """Bring the clusters up to date with history (incremental; ``rebuild`` recomputes all of them)."""
    return fa.correlate(rebuild=bool(body and body.rebuild)).as_dict()
