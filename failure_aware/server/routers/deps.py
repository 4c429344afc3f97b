"""What every router needs: the ledger of the app, typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ...ledger import Ledger


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
