"""Storage of API tokens: functions over a Connection inside the caller's transaction.

Only the SHA-256 of a secret is stored; a lookup goes by that hash (unique index), then compares it again
in constant time (``tokens.matches``). Revoking keeps the row, so a name is never reused by another token.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, exists, insert, select, update

from failure_aware.domain.errors import NotFound, ValidationError
from failure_aware.domain.timeutil import from_us, opt_from_us
from failure_aware.domain.tokens import ApiToken, Scope, matches, secret_hash
from failure_aware.storage.tables import api_token


def _token(row: Row[Any]) -> ApiToken:
    return ApiToken(name=row.name, scope=Scope(row.scope), created_at=from_us(row.created_at_us),
                    created_by=row.created_by, revoked_at=opt_from_us(row.revoked_at_us))


def create(
    conn: Connection, *, name: str, scope: Scope, secret: str, created_by: str, now_us: int
) -> ApiToken:
    """Store a new token (its hash); ``ValidationError`` if the name was ever used."""
    if conn.execute(select(api_token.c.name).where(api_token.c.name == name)).first() is not None:
        raise ValidationError(
            f"a token named {name!r} exists (or existed: names of revoked tokens are not reused, they stay "
            "the actor of what the token did); choose another name"
        )
    conn.execute(insert(api_token).values(
        name=name, secret_sha256=secret_hash(secret), scope=scope.value, created_at_us=now_us,
        created_by=created_by, revoked_at_us=None,
    ))
    return ApiToken(name=name, scope=scope, created_at=from_us(now_us), created_by=created_by)


def listed(conn: Connection) -> list[ApiToken]:
    """Every token, active and revoked, by name."""
    return [_token(r) for r in conn.execute(select(api_token).order_by(api_token.c.name))]


def revoke(conn: Connection, name: str, *, now_us: int) -> ApiToken:
    """Revoke the token ``name`` (``NotFound`` if none); revoking twice keeps the first time."""
    row = conn.execute(select(api_token).where(api_token.c.name == name)).first()
    if row is None:
        raise NotFound(f"no token named {name!r}; list them with: failure-aware token list")
    if row.revoked_at_us is None:
        conn.execute(update(api_token).where(api_token.c.name == name, api_token.c.revoked_at_us.is_(None))
                     .values(revoked_at_us=now_us))
        row = conn.execute(select(api_token).where(api_token.c.name == name)).one()
    return _token(row)


def authenticate(conn: Connection, secret: str) -> ApiToken | None:
    """The active token whose secret this is, or None."""
    digest = secret_hash(secret)
    row = conn.execute(
        select(api_token).where(api_token.c.secret_sha256 == digest, api_token.c.revoked_at_us.is_(None))
    ).first()
    if row is None or not matches(secret, row.secret_sha256):
        return None
    return _token(row)


def any_active(conn: Connection) -> bool:
    """Whether at least one token can open the API."""
    return bool(conn.execute(select(exists().where(api_token.c.revoked_at_us.is_(None)))).scalar())
