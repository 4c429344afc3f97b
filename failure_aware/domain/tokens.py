"""API tokens of ``failure-aware serve`` (SPEC 10): scopes, secrets and their hashes. Pure: no I/O.

A secret is ``fa_`` + 43 characters of ``secrets.token_urlsafe`` (256 random bits). The database keeps
only its SHA-256 (a secret this random needs no slow hash: nothing about it can be guessed), and
``matches`` compares hashes in constant time. Scopes are ordered, each including the ones before it:
``read`` < ``record`` < ``operate`` < ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.records import Record

SECRET_PREFIX = "fa_"
MAX_SECRET_CHARS = 200  # anything longer is not one of ours: refused before hashing


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"  # read events, clusters, health, metrics
    RECORD = "record"  # + detect, report outcomes, claim and finish (remote runners)
    OPERATE = "operate"  # + notes, revive, bury, bulk revive, correlate
    ADMIN = "admin"  # + everything

    def includes(self, other: Scope) -> bool:
        """Whether a token of this scope may do what ``other`` allows."""
        return _ORDER.index(self) >= _ORDER.index(other)


_ORDER = (Scope.READ, Scope.RECORD, Scope.OPERATE, Scope.ADMIN)


def scope(value: object) -> Scope:
    """A scope from its name (``ValidationError`` naming the allowed ones)."""
    try:
        return Scope(str(value).lower())
    except ValueError:
        raise ValidationError(
            f"unknown scope {value!r}; use one of {', '.join(s.value for s in Scope)}"
        ) from None


def new_secret() -> str:
    """A fresh, unguessable secret."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """The SHA-256 (hex) of a secret: what the database keeps."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(secret_hash(secret), stored_hash)


@dataclass(frozen=True)
class ApiToken(Record):
    """A token as listed: never its secret (the database does not have it)."""

    name: str
    scope: Scope
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the token still opens the API."""
        return self.revoked_at is None


@dataclass(frozen=True)
class NewToken:
    """A token just made, with its secret: shown once, then only its hash remains."""

    token: ApiToken
    secret: str

    def __repr__(self) -> str:  # never print the secret by accident (a log line, a traceback)
        return f"NewToken(token={self.token!r}, secret='***')"


__all__ = ["ApiToken", "NewToken", "Scope", "matches", "new_secret", "scope", "secret_hash"]
