"""``/api/v1/claims``: remote runners claim due events and finish them, fenced like in-process workers.

A runner in any language claims with ``POST /api/v1/claims`` (it gets a token per event and a lease),
runs the work, and reports with ``POST /api/v1/claims/{token}``. A token that no longer holds its event
(the lease expired and ``recover`` ran, or it was claimed again) is refused with 409 ``StaleClaim`` and
nothing is written. Servers keep nothing: any server of the database can finish any claim.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from failure_aware.domain.records import Claim
from failure_aware.server.auth import RecordToken
from failure_aware.server.problems import responses
from failure_aware.server.routers.deps import LedgerDep, reply
from failure_aware.server.schemas import AttemptResultOut, ClaimIn, ClaimsOut, OutcomeIn

router = APIRouter(prefix="/claims", tags=["claims"])


@router.post("", response_model=ClaimsOut, responses=responses(400, 401, 403, 413, 422))
def claim(body: ClaimIn, token: RecordToken, fa: LedgerDep) -> Response:
    """Claim up to ``limit`` events due now (PENDING, or FAILED past their retry time), oldest due first,
    of the given ``types`` (all when absent), for ``lease_seconds``. The token's name is the worker."""
    claims: list[Claim] = []
    types: list[str | None] = list(body.types) if body.types else [None]
    for event_type in types:
        if len(claims) >= body.limit:
            break
        claims += fa.claim_due(
            limit=body.limit - len(claims),
            event_type=event_type,
            worker=token.name,
            lease_seconds=body.lease_seconds,
        )
    return reply({"data": [c.as_dict() for c in claims]})


@router.post(
    "/{claim_token}", response_model=AttemptResultOut, responses=responses(400, 401, 403, 404, 409, 413, 422)
)
def finish(
    claim_token: Annotated[str, Path(max_length=60, description="The token of a claim")],
    body: OutcomeIn,
    _token: RecordToken,
    fa: LedgerDep,
) -> Response:
    """Record the outcome of a claimed attempt (409 ``StaleClaim`` when the claim no longer holds it)."""
    held = fa.held_claim(claim_token)
    result = fa.finish(held, **body.outcome_args())
    return reply(result.as_dict())
