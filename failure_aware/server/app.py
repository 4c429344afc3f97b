"""The app factory: ``create_app(ledger)`` gives the ASGI app of ``failure-aware serve``.

Routes: the JSON API under ``/api/v1`` (its OpenAPI document at ``/api/v1/openapi.json``),
``/metrics`` and the dashboard (``/``, ``/events``, ... and ``/static``). The app holds the ledger and
nothing else of its own (the optional login token lives in memory; the dashboard's session key comes from
the environment), so any number of processes can serve one PostgreSQL database. Endpoints are plain
functions run in the server's thread pool; each calls the Ledger, which opens its own transaction.
"""

from __future__ import annotations

from fastapi import FastAPI

from failure_aware import __version__
from failure_aware.ledger import Ledger
from failure_aware.server import dashboard, problems
from failure_aware.server.auth import LoginToken, TokenCache
from failure_aware.server.dashboard.session import SessionKey
from failure_aware.server.limits import BodyLimit
from failure_aware.server.routers import claims, clusters, events, incidents, metrics, operations

API_PREFIX = "/api/v1"
BODY_OVERHEAD_BYTES = 256 * 1024  # room for the rest of a request around the largest payload


def create_app(
    ledger: Ledger,
    *,
    public_metrics: bool = False,
    login: LoginToken | None = None,
    max_body_bytes: int | None = None,
    token_cache_seconds: float = 5.0,
    session_key: SessionKey | None = None,
) -> FastAPI:
    """The ASGI app serving ``ledger``.

    ``public_metrics`` opens ``/metrics`` without a token. ``login`` is the one-off admin token of a
    loopback ``serve`` (see ``auth``). ``max_body_bytes`` bounds every request body (default: the ledger's
    payload limit plus 256 KiB), enforced before anything parses it. ``token_cache_seconds``: how long a
    token found is remembered (so how long a revoked one may still be accepted; 0: never remembered).
    """
    app = FastAPI(
        title="failure-aware",
        version=__version__,
        summary="Record events and attempts, treat failures as data.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ledger = ledger
    app.state.login = login
    app.state.token_cache = TokenCache(token_cache_seconds)
    app.state.public_metrics = public_metrics
    problems.install(app)
    for module in (events, claims, clusters, incidents, operations):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(metrics.router(public=public_metrics))
    dashboard.install(app, session_key)
    limit = max_body_bytes if max_body_bytes is not None else ledger.max_payload_bytes + BODY_OVERHEAD_BYTES
    app.add_middleware(BodyLimit, max_bytes=limit)
    return app
