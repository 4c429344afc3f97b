"""Signing in and out: ``/login`` (a form, or ``?token=`` as ``serve`` prints it) and ``/logout`` (a POST).

A token is checked like a bearer token (hashed, constant-time, the token cache); a good one gets a signed
session cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS) and a redirect that drops the secret from
the address bar. The form carries a CSRF token bound to a nonce cookie, since there is no session yet.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response

from failure_aware.server.auth import authenticate
from failure_aware.server.dashboard.access import Refused, local_path, read_form, viewer_or_none
from failure_aware.server.dashboard.render import page, redirect
from failure_aware.server.dashboard.session import (
    COOKIE,
    LOGIN_COOKIE,
    SESSION_SECONDS,
    SessionKey,
    login_id,
)

router = APIRouter(include_in_schema=False)
MAX_SECRET_CHARS = 200


def _key(request: Request) -> SessionKey:
    key: SessionKey = request.app.state.session_key
    return key


def _form(request: Request, next_path: str, status: int = 200, error: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = page(request, "login.html", status, viewer=None, next_path=next_path, error=error,
                    csrf=_key(request).login_csrf(nonce))
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/login", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def _sign_in(request: Request, secret: str, next_path: str) -> Response:
    state = request.app.state
    token = None
    if secret and len(secret) <= MAX_SECRET_CHARS:
        token = await authenticate(state.ledger, state.login, secret, state.token_cache)
    if token is None:
        return _form(request, next_path, 401, "That token is unknown or revoked.")
    login = state.login
    is_login_token = login is not None and token is login.token
    which = login_id(login.secret_sha256) if is_login_token and login is not None else ""
    cookie, _session = _key(request).issue(token.name, login_token=is_login_token, login_id=which)
    response = redirect(next_path)
    response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The login form; with ``?token=SECRET`` (the link ``serve`` prints) it signs in at once."""
    next_path = local_path(request.query_params.get("next"))
    secret = request.query_params.get("token")
    if secret is not None:
        return await _sign_in(request, secret.strip(), next_path)
    return _form(request, next_path)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """The login form's submission: its CSRF token must match the nonce cookie set with the form."""
    form = await read_form(request)
    next_path = local_path(form.get("next"))
    if not _key(request).login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _form(request, next_path, 403, "The form expired or its CSRF token is wrong: try again.")
    return await _sign_in(request, form.get("token", "").strip(), next_path)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the cookie is dropped) and show the login form.

    A POST carrying the session's CSRF token, like every action: a link on another site cannot sign an
    operator out (a GET could, since the session cookie is SameSite=Lax)."""
    viewer = await viewer_or_none(request)
    if viewer is not None:
        form = await read_form(request)
        if not _key(request).csrf_ok(viewer.session, form.get("csrf")):
            raise Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    response = redirect("/login")
    response.delete_cookie(COOKIE, path="/")
    return response
