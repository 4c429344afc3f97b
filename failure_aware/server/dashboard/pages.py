"""The dashboard's pages (SPEC 11): GET only, each reading through the Ledger and writing nothing.

Filters live in the query string, so every page is bookmarkable. Counts come from the counters
(``state_counts``, health); lists are pages of at most ``PAGE`` rows read by index. A filter the Ledger
refuses (an unknown state, a time without a zone) shows the page with the message and status 422.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from failure_aware.domain.errors import FailureAwareError, NotFound, ValidationError
from failure_aware.domain.states import State
from failure_aware.domain.timeutil import EPOCH, from_us, parse_time
from failure_aware.ledger import Ledger
from failure_aware.server.dashboard.access import PageViewer, Viewer
from failure_aware.server.dashboard.chart import chart
from failure_aware.server.dashboard.render import page

router = APIRouter(include_in_schema=False)
PAGE = 50
DEAD_SAMPLE = 500
TIMELINE_HOURS = 24
BULK_WINDOWS = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30, "all": None}
EVENT_FILTERS = ("state", "type", "since", "until", "fingerprint", "cluster")


def _ledger(request: Request) -> Ledger:
    found: Ledger = request.app.state.ledger
    return found


def _render(request: Request, viewer: Viewer, template: str, status: int = 200, **context: Any
            ) -> HTMLResponse:
    return page(request, template, status, viewer=viewer, states=[s.value for s in State], **context)


def _not_found(request: Request, viewer: Viewer, message: str) -> HTMLResponse:
    return _render(request, viewer, "error.html", 404, title="Not found", message=message)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, viewer: PageViewer) -> HTMLResponse:
    """Is anything wrong? The verdict and its reasons, counts by state and type, the last 24 hours of
    failures with cluster spans, active clusters and incidents."""
    fa = _ledger(request)
    now = from_us(fa.store.now_us())
    # two reads in two worker threads at once: the page waits for the slower, not for both in turn
    report, timeline = await asyncio.gather(
        run_in_threadpool(fa.health),
        run_in_threadpool(lambda: fa.timeline(since=now - timedelta(hours=TIMELINE_HOURS), until=now,
                                              buckets=48)),
    )
    return _render(request, viewer, "overview.html", report=report, chart=chart(timeline),
                   hours=TIMELINE_HOURS)


@router.get("/health", response_class=HTMLResponse)
async def health(request: Request, viewer: PageViewer) -> HTMLResponse:
    """The health report in full: every figure, overall and per type, with the rules' thresholds."""
    report = await run_in_threadpool(_ledger(request).health)
    return _render(request, viewer, "health.html", report=report)


def event_filters(request: Request) -> dict[str, str]:
    """The events page's filters as given (blank ones dropped)."""
    query = request.query_params
    return {name: query[name].strip() for name in EVENT_FILTERS if query.get(name, "").strip()}


def _time(filters: dict[str, str], name: str) -> datetime | None:
    text = filters.get(name)
    return parse_time(text, field=name) if text else None


@router.get("/events", response_class=HTMLResponse)
async def events(request: Request, viewer: PageViewer) -> HTMLResponse:
    """Events newest first, filtered (state, type, time, fingerprint, cluster), ``PAGE`` per page."""
    fa = _ledger(request)
    filters = event_filters(request)
    before = request.query_params.get("before", "")

    def read() -> dict[str, Any]:
        before_id = int(before) if before.isdigit() else None
        if before and before_id is None:
            raise ValidationError(f"before must be an event id, got {before!r}")
        found = fa.events(
            state=filters.get("state"), event_type=filters.get("type"), since=_time(filters, "since"),
            until=_time(filters, "until"), fingerprint=filters.get("fingerprint"),
            cluster_id=filters.get("cluster"), before_id=before_id, limit=PAGE + 1,
        )
        total = None
        if set(filters) <= {"state", "type"}:  # only then do the counters know the total
            counts = fa.state_counts(event_type=filters.get("type"))
            total = counts[State(filters["state"])] if "state" in filters else sum(counts.values())
        return {"events": found[:PAGE], "more": len(found) > PAGE, "total": total}

    try:
        context = await run_in_threadpool(read)
        status, error = 200, None
    except FailureAwareError as exc:
        context, status, error = {"events": [], "more": False, "total": None}, 422, str(exc)
    return _render(request, viewer, "events.html", status, filters=filters, error=error, **context)


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event(request: Request, viewer: PageViewer, event_id: str) -> HTMLResponse:
    """One event: attempts as a timeline (errors, tracebacks, details), transitions, notes, clusters."""
    if not event_id.isdigit() or not 0 < int(event_id) < 2**63:
        return _not_found(request, viewer, f"there is no event {event_id!r}: event ids are numbers")
    try:
        detail = await run_in_threadpool(_ledger(request).show, int(event_id))
    except NotFound as exc:
        return _not_found(request, viewer, str(exc))
    return _render(request, viewer, "event.html", detail=detail, done=request.query_params.get("done"))


@router.get("/dead", response_class=HTMLResponse)
async def dead(request: Request, viewer: PageViewer) -> HTMLResponse:
    """Dead letters by type (exact counts) and the fingerprint of their last failure (newest sample)."""
    kinds = await run_in_threadpool(lambda: _ledger(request).dead_letters(sample=DEAD_SAMPLE))
    return _render(request, viewer, "dead.html", kinds=kinds, sample=DEAD_SAMPLE,
                   windows=list(BULK_WINDOWS))


@router.get("/clusters", response_class=HTMLResponse)
async def clusters(request: Request, viewer: PageViewer) -> HTMLResponse:
    """Clusters newest first (``active=1`` for active ones only; ``type``)."""
    kind = request.query_params.get("type", "").strip() or None
    active = request.query_params.get("active") == "1"
    try:
        found = await run_in_threadpool(
            lambda: _ledger(request).clusters(event_type=kind, active=active, limit=PAGE, examples=False))
        status, error = 200, None
    except FailureAwareError as exc:
        found, status, error = [], 422, str(exc)
    return _render(request, viewer, "clusters.html", status, clusters=found, kind=kind or "",
                   active=active, error=error, limit=PAGE)


@router.get("/clusters/{cluster_id}", response_class=HTMLResponse)
async def cluster(request: Request, viewer: PageViewer, cluster_id: str) -> HTMLResponse:
    """One cluster: the rule that made it, its members, failures in its window, notes."""
    try:
        detail = await run_in_threadpool(lambda: _ledger(request).cluster(cluster_id, attempts_limit=200))
    except (NotFound, ValidationError) as exc:
        return _not_found(request, viewer, str(exc))
    return _render(request, viewer, "cluster.html", detail=detail, done=request.query_params.get("done"))


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(request: Request, viewer: PageViewer) -> HTMLResponse:
    """Incidents newest first (``active=1`` for active ones only)."""
    active = request.query_params.get("active") == "1"
    found = await run_in_threadpool(lambda: _ledger(request).incidents(active=active, limit=PAGE))
    return _render(request, viewer, "incidents.html", incidents=found, active=active, limit=PAGE)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident(request: Request, viewer: PageViewer, incident_id: str) -> HTMLResponse:
    """One incident with its clusters and the fingerprints they share."""
    try:
        detail = await run_in_threadpool(_ledger(request).incident, incident_id)
    except (NotFound, ValidationError) as exc:
        return _not_found(request, viewer, str(exc))
    return _render(request, viewer, "incident.html", detail=detail)


def bulk_filter(values: dict[str, str] | Any) -> dict[str, str]:
    """A bulk revive's filter (type, fingerprint, died within a window) as given, blanks dropped."""
    found = {name: str(values.get(name, "")).strip() for name in ("type", "fingerprint", "within")}
    return {name: value for name, value in found.items() if value}


def bulk_since(fa: Ledger, within: str | None) -> datetime:
    """The earliest death time a bulk revive takes (``within`` one of ``BULK_WINDOWS``)."""
    if within is None:
        within = "all"
    if within not in BULK_WINDOWS:
        raise ValidationError(f"within must be one of {', '.join(BULK_WINDOWS)}, got {within!r}")
    hours = BULK_WINDOWS[within]
    return EPOCH if hours is None else from_us(fa.store.now_us()) - timedelta(hours=hours)


@router.get("/revive", response_class=HTMLResponse)
async def bulk_revive_preview(request: Request, viewer: PageViewer) -> HTMLResponse:
    """The dry run of a bulk revive: how many DEAD events match, and a form to confirm (operate only)."""
    if not viewer.can_operate:
        return _render(request, viewer, "error.html", 403, title="Not allowed",
                       message=f"token {viewer.token.name!r} has scope {viewer.token.scope.value}; "
                               "a bulk revive needs operate or above")
    fa = _ledger(request)
    chosen = bulk_filter(request.query_params)

    def dry_run() -> list[int]:
        return fa.revive_dead(since=bulk_since(fa, chosen.get("within")), event_type=chosen.get("type"),
                              fingerprint=chosen.get("fingerprint"), dry_run=True, limit=MAX_BULK + 1,
                              actor=viewer.token.name)

    try:
        ids = await run_in_threadpool(dry_run)
    except FailureAwareError as exc:
        return _render(request, viewer, "error.html", 422, title="Cannot revive", message=str(exc))
    return _render(request, viewer, "revive.html", chosen=chosen, count=min(len(ids), MAX_BULK),
                   capped=len(ids) > MAX_BULK, max_bulk=MAX_BULK, sample_ids=ids[:20])


MAX_BULK = 10_000  # one transaction; more than this is revived in several confirmed steps
