"""Authentication as a dependency: ``Depends(require_scope(Scope.OPERATE))`` on an operation.

A request carries ``Authorization: Bearer SECRET``. A missing or unknown secret (or a revoked token) is
401, a token whose scope does not include the one needed is 403. The secret is hashed and looked up in
the database, compared in constant time, and never logged or echoed.

A token found is remembered for ``cache_seconds`` (default 5 s) by its hash, so a busy client does not
pay a database round trip per request for its token (that lookup cost as much as the work of a small
request); so a revoked token is refused by every server within that time. Unknown secrets are never
remembered (a flood of wrong ones cannot grow the cache), and the cache is bounded. ``serve
--token-cache-seconds 0`` checks the database on every request.

The one-off login token of a loopback ``serve`` lives only in that process's memory (its hash), for the
process's lifetime.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from failure_aware.domain.timeutil import utc_now
from failure_aware.domain.tokens import ApiToken, Scope, matches, new_secret, secret_hash
from failure_aware.ledger import Ledger

_bearer = HTTPBearer(auto_error=False, description="A token made by `failure-aware token create`.")
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="failure-aware"'}


@dataclass(frozen=True)
class LoginToken:
    """The one-off admin token of a loopback ``serve`` started without tokens: its hash, in memory only."""

    token: ApiToken
    secret_sha256: str

    @classmethod
    def make(cls) -> tuple[LoginToken, str]:
        """A new login token and its secret (to print once)."""
        secret = new_secret()
        token = ApiToken(name="serve-login", scope=Scope.ADMIN, created_at=utc_now(), created_by="serve")
        return cls(token, secret_hash(secret)), secret


class TokenCache:
    """Tokens found recently, by the hash of their secret, each for ``seconds`` (0: no caching)."""

    MAX_ENTRIES = 1024

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._found: dict[str, tuple[ApiToken, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiToken | None:
        """The token remembered for ``digest``, if still fresh."""
        with self._lock:
            entry = self._found.get(digest)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._found[digest]
                return None
            return entry[0]

    def put(self, digest: str, token: ApiToken) -> None:
        """Remember a token found in the database."""
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._found) >= self.MAX_ENTRIES:
                self._found.clear()
            self._found[digest] = (token, time.monotonic() + self.seconds)


async def authenticate(ledger: Ledger, login: LoginToken | None, secret: str, cache: TokenCache | None = None
                       ) -> ApiToken | None:
    """The token ``secret`` opens, or None. Runs on the event loop; only a database lookup (a token not
    remembered) goes to a worker thread."""
    if login is not None and matches(secret, login.secret_sha256):
        return login.token
    digest = secret_hash(secret)
    if cache is not None:
        found = cache.get(digest)
        if found is not None:
            return found
    token = await run_in_threadpool(ledger.authenticate, secret)
    if token is not None and cache is not None:
        cache.put(digest, token)
    return token


def require_scope(needed: Scope) -> Any:
    """A dependency giving the request's token, refusing it (401/403) unless its scope includes ``needed``."""

    async def check(request: Request, credentials: _Credentials) -> ApiToken:
        if credentials is None or not credentials.credentials:
            raise HTTPException(
                401,
                "this needs a token: send Authorization: Bearer SECRET "
                "(make one with: failure-aware token create NAME --scope SCOPE)",
                headers=_CHALLENGE,
            )
        state = request.app.state
        token = await authenticate(state.ledger, state.login, credentials.credentials, state.token_cache)
        if token is None:
            raise HTTPException(401, "the token is unknown or revoked", headers=_CHALLENGE)
        if not token.scope.includes(needed):
            raise HTTPException(
                403, f"token {token.name!r} has scope {token.scope.value}; this needs {needed.value} or above"
            )
        return token

    return Depends(check)


ReadToken = Annotated[ApiToken, require_scope(Scope.READ)]
RecordToken = Annotated[ApiToken, require_scope(Scope.RECORD)]
OperateToken = Annotated[ApiToken, require_scope(Scope.OPERATE)]
