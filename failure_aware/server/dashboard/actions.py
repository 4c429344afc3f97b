"""The dashboard's actions: POST forms with the session's CSRF token, for tokens of scope ``operate``.

Each calls one Ledger method with the token's name as the actor, then redirects (303) to the page it came
from; the Ledger's refusals (a revive of an event that is not DEAD, a blank note) come back as a page with
the message and the matching status, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from failure_aware.domain.errors import FailureAwareError, NotFound
from failure_aware.ledger import Ledger
from failure_aware.server.dashboard.access import OperateAction, Refused
from failure_aware.server.dashboard.pages import MAX_BULK, bulk_filter, bulk_since
from failure_aware.server.dashboard.render import page, redirect
from failure_aware.server.problems import status_of

router = APIRouter(include_in_schema=False)


def _ledger(request: Request) -> Ledger:
    found: Ledger = request.app.state.ledger
    return found


async def _run(request: Request, action: OperateAction, call: Callable[[], Any], done: str) -> Response:
    try:
        await run_in_threadpool(call)
    except FailureAwareError as exc:
        title = "Not found" if isinstance(exc, NotFound) else "Refused"
        return page(request, "error.html", status_of(exc), viewer=action.viewer, title=title,
                    message=str(exc))
    return redirect(done)


def _event_id(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise Refused(404, f"there is no event {raw!r}: event ids are numbers")
    return int(raw)


@router.post("/events/{event_id}/note")
async def note(request: Request, event_id: str, action: OperateAction) -> Response:
    """Add a note to an event, by the token's name."""
    number = _event_id(event_id)
    text = action.form.get("text", "")
    return await _run(request, action, lambda: _ledger(request).annotate(
        number, text, author=action.viewer.token.name), f"/events/{number}?done=note")


@router.post("/events/{event_id}/revive")
async def revive(request: Request, event_id: str, action: OperateAction) -> Response:
    """DEAD -> PENDING."""
    number = _event_id(event_id)
    name = action.viewer.token.name
    reason = action.form.get("reason", "").strip() or f"revived by {name} (dashboard)"
    return await _run(request, action, lambda: _ledger(request).revive(number, actor=name, reason=reason),
                      f"/events/{number}?done=revive")


@router.post("/events/{event_id}/bury")
async def bury(request: Request, event_id: str, action: OperateAction) -> Response:
    """FAILED -> DEAD."""
    number = _event_id(event_id)
    name = action.viewer.token.name
    reason = action.form.get("reason", "").strip() or f"given up by {name} (dashboard)"
    return await _run(request, action, lambda: _ledger(request).bury(number, actor=name, reason=reason),
                      f"/events/{number}?done=bury")


@router.post("/clusters/{cluster_id}/note")
async def cluster_note(request: Request, cluster_id: str, action: OperateAction) -> Response:
    """Add a note to a cluster (kept against its type and span)."""
    text = action.form.get("text", "")
    back = f"/clusters/{quote(cluster_id, safe='')}?done=note"
    return await _run(request, action, lambda: _ledger(request).annotate_cluster(
        cluster_id, text, author=action.viewer.token.name), back)


@router.post("/revive")
async def bulk_revive(request: Request, action: OperateAction) -> Response:
    """A confirmed bulk revive: at most the number the dry run showed (``expected``), in one transaction."""
    fa = _ledger(request)
    chosen = bulk_filter(action.form)
    expected = action.form.get("expected", "")
    if not expected.isdigit() or not 0 < int(expected) <= MAX_BULK:
        raise Refused(422, "expected must be the count the dry run showed (1 to "
                           f"{MAX_BULK:,}); start again from the dead letters page")
    name = action.viewer.token.name
    revived: list[int] = []

    def call() -> None:
        revived.extend(fa.revive_dead(
            since=bulk_since(fa, chosen.get("within")), event_type=chosen.get("type"),
            fingerprint=chosen.get("fingerprint"), limit=int(expected), actor=name,
            reason=f"bulk revive by {name} (dashboard)",
        ))

    try:
        await run_in_threadpool(call)
    except FailureAwareError as exc:
        return page(request, "error.html", status_of(exc), viewer=action.viewer, title="Refused",
                    message=str(exc))
    return page(request, "revived.html", viewer=action.viewer, chosen=chosen, revived=revived,
                expected=int(expected))
