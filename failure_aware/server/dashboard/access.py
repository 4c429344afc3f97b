"""Who is looking at the dashboard: the session cookie turned into a token (``Viewer``), as a dependency.

A page without a valid session redirects to ``/login?next=...``; an action (POST) without one, or with a
wrong CSRF token, is refused with 403 and writes nothing. A ``read`` token sees pages and no action; an
action needs ``operate``, checked here on the server whatever the page showed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from failure_aware.domain.tokens import ApiToken, Scope
from failure_aware.ledger import Ledger
from failure_aware.server.dashboard.session import COOKIE, Session, SessionKey, login_id

MAX_FORM_FIELDS = 32


class LoginRequired(Exception):
    """No valid session: the handler redirects to the login page, coming back to ``next_path``."""

    def __init__(self, next_path: str) -> None:
        super().__init__("login required")
        self.next_path = next_path


class Refused(Exception):
    """An action refused before it ran (no session, CSRF, scope, a malformed form): an HTML error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Viewer:
    """The signed-in token and what its pages need: the CSRF token of its forms, whether it may act."""

    token: ApiToken
    session: Session
    csrf: str

    @property
    def can_operate(self) -> bool:
        """Whether the token's scope allows actions (notes, revive, bury, bulk revive)."""
        return self.token.scope.includes(Scope.OPERATE)


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this site (so a login link cannot send the browser elsewhere)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 0x20 for ch in value):
        return default
    return value


def _key(request: Request) -> SessionKey:
    key: SessionKey = request.app.state.session_key
    return key


async def token_of(request: Request, session: Session) -> ApiToken | None:
    """The active token a session belongs to, or None (revoked, or the process's login token is gone)."""
    state = request.app.state
    if session.login_token:
        login = state.login
        if login is None or not hmac.compare_digest(session.login_id, login_id(login.secret_sha256)):
            return None  # another process's (or a restarted one's) login token
        return login.token if login.token.name == session.name else None
    cache = state.token_cache
    remembered: ApiToken | None = cache.get(f"session:{session.name}")
    if remembered is not None:
        return remembered
    ledger: Ledger = state.ledger
    tokens = await run_in_threadpool(ledger.tokens)
    found = next((t for t in tokens if t.name == session.name and t.active), None)
    if found is not None:
        cache.put(f"session:{session.name}", found)
    return found


async def viewer_or_none(request: Request) -> Viewer | None:
    """The viewer of a valid session, or None."""
    key = _key(request)
    session = key.read(request.cookies.get(COOKIE))
    if session is None:
        return None
    token = await token_of(request, session)
    if token is None:
        return None
    return Viewer(token, session, key.csrf(session))


async def page_viewer(request: Request) -> Viewer:
    """A page's viewer; without a session, a redirect to the login page (back to this page after)."""
    viewer = await viewer_or_none(request)
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return viewer


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as single values (the last of repeated names); 400-like refusal else."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        text = body.decode("utf-8")
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=False,
                         max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the form is not valid UTF-8 urlencoded text") from None
    return {name: values[-1] for name, values in pairs.items()}


@dataclass(frozen=True)
class Action:
    """A checked action request: the operating viewer and the submitted form."""

    viewer: Viewer
    form: dict[str, str]


async def operate_action(request: Request) -> Action:
    """An action's viewer and form: a session, the session's CSRF token and scope ``operate``, or 403."""
    viewer = await viewer_or_none(request)
    if viewer is None:
        raise Refused(403, "you are not signed in (or the session ended): sign in again, then retry")
    form = await read_form(request)
    if not _key(request).csrf_ok(viewer.session, form.get("csrf")):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    if not viewer.can_operate:
        raise Refused(403, f"token {viewer.token.name!r} has scope {viewer.token.scope.value}; "
                           "actions need operate or above")
    return Action(viewer, form)


def login_location(next_path: str) -> str:
    """The login page's URL, coming back to ``next_path``."""
    return "/login?next=" + quote(local_path(next_path), safe="")


PageViewer = Annotated[Viewer, Depends(page_viewer)]
OperateAction = Annotated[Action, Depends(operate_action)]
