"""failure-aware: record every event and attempt, treat failures as data.

    from failure_aware import Ledger
    ledger = Ledger()                       # sqlite:///failure-aware.db, or FAILURE_AWARE_DB
    event = ledger.detect("payment.webhook", {"amount": 12}, key="evt_1")
    ledger.run(event.id, deliver)           # claim, call deliver(event), record the outcome
"""

from __future__ import annotations

from failure_aware.domain.errors import (
    DatabaseUnavailable,
    FailureAwareError,
    InvalidTransition,
    NotFound,
    RetryTooEarly,
    SchemaError,
    StaleClaim,
    StorageError,
    ValidationError,
)
from failure_aware.domain.fingerprint import fingerprint
from failure_aware.domain.outcomes import HandlerFailure, Succeeded
from failure_aware.domain.policy import RetryPolicy
from failure_aware.domain.records import (
    Annotation,
    Attempt,
    AttemptResult,
    Claim,
    Event,
    EventDetail,
    ImportReport,
    Transition,
)
from failure_aware.domain.states import Outcome, State
from failure_aware.events.claims import ClaimOutcome
from failure_aware.ledger import Ledger

__version__ = "0.1.0"

__all__ = [
    "Annotation",
    "Attempt",
    "AttemptResult",
    "Claim",
    "ClaimOutcome",
    "DatabaseUnavailable",
    "Event",
    "EventDetail",
    "FailureAwareError",
    "HandlerFailure",
    "ImportReport",
    "InvalidTransition",
    "Ledger",
    "NotFound",
    "Outcome",
    "RetryPolicy",
    "RetryTooEarly",
    "SchemaError",
    "StaleClaim",
    "State",
    "StorageError",
    "Succeeded",
    "Transition",
    "ValidationError",
    "__version__",
    "fingerprint",
]
