"""The dashboard (SPEC 11): server-rendered pages at ``/`` of ``serve``, for people who would rather look.

Jinja2 templates (autoescaped), inline SVG drawn on the server, and a vendored htmx for partial updates;
every page reads without JavaScript. Layout::

    session.py   the signed session cookie and CSRF tokens (FAILURE_AWARE_SESSION_KEY)
    access.py    the viewer of a request (session -> token), the login redirect, action checks
    login.py     /login (form or ?token=), /logout
    pages.py     the GET pages: overview, events, event, dead letters, clusters, incidents, health, revive
    actions.py   the POST forms: note, revive, bury, bulk revive, cluster note
    chart.py     the failures-over-time picture as SVG geometry (pure)
    render.py    the Jinja2 environment, the security headers (CSP without inline script)
"""

from __future__ import annotations

from collections.abc import MutableMapping
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from failure_aware.server.dashboard import actions, login, pages
from failure_aware.server.dashboard.access import LoginRequired, Refused, login_location, viewer_or_none
from failure_aware.server.dashboard.render import page, redirect, secure
from failure_aware.server.dashboard.session import SessionKey


class _Static(StaticFiles):
    """The dashboard's own scripts and styles: cacheable for an hour, with the security headers."""

    async def get_response(self, path: str, scope: MutableMapping[str, Any]) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def _login_required(_request: Request, error: Exception) -> Response:
    assert isinstance(error, LoginRequired)
    return redirect(login_location(error.next_path))


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    viewer = await viewer_or_none(request)
    return page(request, "error.html", error.status, viewer=viewer, title="Refused", message=error.message)


def install(app: FastAPI, session_key: SessionKey | None = None) -> None:
    """Add the dashboard's routes, static files and handlers to ``app`` (its ledger in ``app.state``)."""
    app.state.session_key = session_key or SessionKey.from_environment()
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Refused, _refused)
    for module in (login, pages, actions):
        app.include_router(module.router)
    static = resources.files("failure_aware.server.dashboard") / "static"
    app.mount("/static", _Static(directory=str(static)), name="static")


__all__ = ["SessionKey", "install", "secure"]
