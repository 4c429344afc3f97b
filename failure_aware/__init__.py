"""failure-aware: record every event and attempt, treat failures as data.

    from failure_aware import Ledger
    ledger = Ledger()                       # sqlite:///failure-aware.db, or FAILURE_AWARE_DB
    event = ledger.detect("payment.webhook", {"amount": 12}, key="evt_1")
    ledger.run(event.id, deliver)           # claim, call deliver(event), record the outcome
"""

from __future__ import annotations

from .core.claims import ClaimOutcome
from .errors import (
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
from .fingerprint import fingerprint
from .ledger import Ledger
from .models import Annotation, Attempt, AttemptResult, Claim, Event, EventDetail, ImportReport, Transition
from .outcomes import HandlerFailure, Succeeded
from .policy import RetryPolicy
from .states import Outcome, State

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
