"""Authentication as a dependency: ``Depends(require_scope(Scope.OPERATE))`` on an operation.

A request carries ``Authorization: Bearer SECRET``. A missing or unknown secret (or a revoked token) is
401, a token whose scope does not include the one needed is 403. The secret is hashed and looked up per
request (no cache: a revoked token stops working at once on every server), compared in constant time,
and never logged or echoed. The one-off login token of a loopback ``serve`` lives only in that process's
memory (its hash), for the process's lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..ledger import Ledger
from ..timeutil import utc_now
from ..tokens import ApiToken, Scope, matches, new_secret, secret_hash

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


def authenticate(ledger: Ledger, login: LoginToken | None, secret: str) -> ApiToken | None:
    """The token ``secret`` opens, or None."""
    if login is not None and matches(secret, login.secret_sha256):
        return login.token
    return ledger.authenticate(secret)


def require_scope(needed: Scope) -> Any:
    """A dependency giving the request's token, refusing it (401/403) unless its scope includes ``needed``."""

    def check(request: Request, credentials: _Credentials) -> ApiToken:
        if credentials is None or not credentials.credentials:
            raise HTTPException(
                401,
                "this needs a token: send Authorization: Bearer SECRET "
                "(make one with: failure-aware token create NAME --scope SCOPE)",
                headers=_CHALLENGE,
            )
        token = authenticate(request.app.state.ledger, request.app.state.login, credentials.credentials)
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
