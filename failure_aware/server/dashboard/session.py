"""The dashboard's session cookie and CSRF tokens: HMAC-SHA256 signatures with one key.

The cookie holds no secret of the token: its name, whether it is the one-off login token, an expiry and
a random session id, signed. Each request checks the signature, the expiry, and that the token is still
active (a revoked token ends its sessions within the token cache's seconds). A form carries a CSRF token
derived from the session id (``HMAC(key, "csrf|" + sid)``), so a page of another site can neither read
nor forge it.

The key comes from ``FAILURE_AWARE_SESSION_KEY`` (any text of 32 characters or more): give every
``serve`` process of one database the same key and a session opened on one is accepted by the others.
Without it each process draws a random key at start: sessions end when it restarts, and behind a load
balancer a browser must stick to one process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from failure_aware.domain.errors import ValidationError

KEY_ENV = "FAILURE_AWARE_SESSION_KEY"
MIN_KEY_CHARS = 32
COOKIE = "fa_session"
LOGIN_COOKIE = "fa_login"  # a nonce for the login form's CSRF token (there is no session yet)
SESSION_SECONDS = 12 * 3600  # a working night; then log in again
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the token's name, whether it is the one-off login token, and the session id."""

    name: str
    login_token: bool
    sid: str
    expires: int
    login_id: str = ""  # which process's login token (a digest of its hash), for login-token sessions


class SessionKey:
    """Signs and checks cookies and CSRF tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_environment(cls) -> SessionKey:
        """The key of ``FAILURE_AWARE_SESSION_KEY``, else a random one for this process."""
        text = os.environ.get(KEY_ENV)
        if text is None or text == "":
            return cls(secrets.token_bytes(32))
        if len(text) < MIN_KEY_CHARS:
            raise ValidationError(
                f"{KEY_ENV} is too short to sign sessions safely: use {MIN_KEY_CHARS} characters or more "
                "(for example the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return cls(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()

    def issue(self, name: str, *, login_token: bool, login_id: str = "", now: float | None = None
              ) -> tuple[str, Session]:
        """A new session for token ``name``: the cookie value and the session."""
        moment = time.time() if now is None else now
        session = Session(name, login_token, secrets.token_urlsafe(16), int(moment) + SESSION_SECONDS,
                          login_id)
        body = json.dumps({"n": name, "l": login_token, "s": session.sid, "e": session.expires,
                           "i": login_id}, separators=(",", ":"))
        encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{encoded}.{self._mac('session', encoded)}", session

    def read(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie value holds, or None (absent, tampered with, expired, malformed)."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        encoded, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", encoded)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            session = Session(str(data["n"]), bool(data["l"]), str(data["s"]), int(data["e"]),
                              str(data.get("i", "")))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session's forms."""
        return self._mac("csrf", session.sid)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        """Whether a form's CSRF token is this session's (constant-time comparison)."""
        return bool(given) and hmac.compare_digest(str(given), self.csrf(session))

    def login_csrf(self, nonce: str) -> str:
        """The login form's CSRF token, bound to the nonce cookie set with the form."""
        return self._mac("login", nonce)

    def login_csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        """Whether the login form's token matches its nonce cookie."""
        return bool(nonce) and bool(given) and hmac.compare_digest(str(given), self.login_csrf(str(nonce)))


def login_id(secret_sha256: str) -> str:
    """Names one process's login token in its sessions without revealing its hash."""
    return hashlib.sha256(f"login|{secret_sha256}".encode()).hexdigest()[:24]


__all__ = ["COOKIE", "KEY_ENV", "LOGIN_COOKIE", "Session", "SessionKey", "login_id"]
