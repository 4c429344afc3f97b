"""Exceptions raised by failure-aware: one tree, each with a message a person can act on.

::

    FailureAwareError                 the root: catch this to catch everything of ours
    ├── ValidationError               bad input: an argument, a JSON line, a config file
    ├── NotFound                      an unknown event or cluster id
    ├── InvalidTransition             the state machine (SPEC section 3) forbids this step
    │   └── RetryTooEarly             a FAILED event claimed or reported before next_retry_at
    ├── StaleClaim                    finishing an attempt with a token that no longer holds the claim
    ├── SchemaError                   a database of an unknown, older or newer schema
    └── StorageError                  wrong URL, unreachable database, a driver error (kept as __cause__)
        └── DatabaseUnavailable       the connection failed or was lost: the same call may succeed later

Nothing here imports a database driver: storage errors are wrapped at the storage boundary.
"""

from __future__ import annotations

from datetime import datetime


class FailureAwareError(Exception):
    """Root of every error failure-aware raises on purpose."""


class ValidationError(FailureAwareError):
    """Input was refused before anything was written."""


class NotFound(FailureAwareError):
    """The event or cluster named does not exist."""


class InvalidTransition(FailureAwareError):
    """The requested state change is not one of the legal transitions; nothing was written."""


class RetryTooEarly(InvalidTransition):
    """A FAILED event was claimed or reported before its ``next_retry_at`` (use ``force`` to override).

    ``refusal`` says what was refused and when the event is due; how to override it depends on where the
    call came from, so each front end words it (``explained``): Python's ``force=True`` by default, the
    CLI's ``--force``, the HTTP API's ``"force": true``.
    """

    def __init__(self, refusal: str, next_retry_at: datetime, how_to_force: str = "force=True") -> None:
        self.refusal = refusal
        self.next_retry_at = next_retry_at
        super().__init__(self.explained(how_to_force))

    def explained(self, how_to_force: str) -> str:
        """The message, telling how to force the attempt in the caller's own terms."""
        return f"{self.refusal}; to try it now anyway, use {how_to_force} (recorded as forced)"


class StaleClaim(FailureAwareError):
    """The claim token no longer holds the event (it was recovered or claimed again)."""


class SchemaError(FailureAwareError):
    """The database schema is missing, older than this version (run ``db upgrade``), newer or foreign."""


class StorageError(FailureAwareError):
    """The database could not be reached or refused an operation; the driver error is ``__cause__``."""


class DatabaseUnavailable(StorageError):
    """The database could not be reached, or the connection was lost mid-transaction (a server restart, a
    terminated backend, a lock wait that timed out): nothing of the transaction was committed, unless the
    connection broke during the commit itself. Retrying the same call later may succeed; workers do so."""
