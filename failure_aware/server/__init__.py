"""``failure-aware serve``: the JSON API and Prometheus metrics over HTTP (SPEC 10).

Needs the ``server`` extra (``pip install "failure-aware[server]"``: FastAPI, uvicorn, pydantic,
prometheus-client). Layout::

    app.py          create_app(ledger): routers, error handlers, the body limit
    auth.py         require_scope(...): bearer tokens, scopes, the one-off login token
    problems.py     every error as application/problem+json with ``code``
    limits.py       the request body limit (ASGI middleware, before parsing)
    pagination.py   opaque cursors carrying their filters
    schemas.py      pydantic models: the contract, and so the OpenAPI document
    routers/        one router per resource: events, claims, clusters, operations, metrics
    serve.py        running it: address checks, the login token, uvicorn, logs without secrets
    dashboard/      the dashboard at / (SPEC 11): Jinja2 pages, sessions, CSRF, htmx
"""

from __future__ import annotations

from failure_aware.server.app import create_app

__all__ = ["create_app"]
