"""What every router needs: the ledger of the app, typed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from failure_aware.ledger import Ledger


async def ledger(request: Request) -> Ledger:
    """The ``Ledger`` the app serves (async: no I/O, so no worker thread)."""
    found: Ledger = request.app.state.ledger
    return found


def time_text(value: object) -> str | None:
    """A query time as the text a cursor keeps, as given (its offset kept: converting a time at the edge
    of the calendar could overflow; the Ledger judges its range). None passes through."""
    from datetime import datetime

    return value.isoformat() if isinstance(value, datetime) else None


LedgerDep = Annotated[Ledger, Depends(ledger)]


def reply(data: Any, status_code: int = 200) -> JSONResponse:
    """``data`` (a record's ``as_dict()``, already the response model's shape) as JSON, without another
    validation pass: the hot paths (detect, report, claim, finish, list) skip re-validating what the
    library built; the tests check every response against the OpenAPI document."""
    return JSONResponse(data, status_code=status_code)
