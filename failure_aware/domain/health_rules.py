"""Thresholds of the health verdict (SPEC section 6), all configurable.

Defaults: CRITICAL when a claim is stuck, a retry is overdue by more than ``critical_overdue_seconds``
(1 h), or the failure rate over the last ``rate_window_seconds`` (1 h) is at least
``critical_failure_rate`` (50 %) over at least ``min_attempts_for_rate`` (10) attempts; DEGRADED when an
event died within ``dead_window_seconds`` (24 h), a retry has been due for more than
``overdue_after_seconds`` (15 min), a cluster is active, or the failure rate is at least
``degraded_failure_rate`` (10 %) over at least ``min_attempts_for_rate`` attempts. A backlog counts too: an
event PENDING with no attempt for more than ``backlog_after_seconds`` (15 min) makes it DEGRADED, for more
than ``critical_backlog_seconds`` (1 h) CRITICAL (nobody is running the work). This module only holds the
numbers; the health report applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from failure_aware.domain.errors import ValidationError

__all__ = ["HealthRules"]


@dataclass(frozen=True)
class HealthRules:
    """Thresholds of the health verdict; invalid values raise ``ValidationError``."""

    overdue_after_seconds: float = 900.0
    critical_overdue_seconds: float = 3600.0
    critical_failure_rate: float = 0.5
    degraded_failure_rate: float = 0.1
    min_attempts_for_rate: int = 10
    rate_window_seconds: float = 3600.0
    dead_window_seconds: float = 86400.0
    backlog_after_seconds: float = 900.0
    critical_backlog_seconds: float = 3600.0

    def __post_init__(self) -> None:
        """Validate each threshold and that the DEGRADED ones are no stricter than the CRITICAL ones."""
        for name in ("overdue_after_seconds", "critical_overdue_seconds", "backlog_after_seconds",
                     "critical_backlog_seconds"):
            object.__setattr__(self, name, _number(name, getattr(self, name), minimum=0.0))
        for name in ("rate_window_seconds", "dead_window_seconds"):
            value = _number(name, getattr(self, name), minimum=0.0)
            if value == 0:
                raise ValidationError(f"{name} must be greater than 0, got {value!r}")
            object.__setattr__(self, name, value)
        for name in ("critical_failure_rate", "degraded_failure_rate"):
            value = _number(name, getattr(self, name), minimum=0.0)
            if not 0 < value <= 1:
                raise ValidationError(f"{name} must be a fraction in (0, 1] (0.5 means 50 %), got {value!r}")
            object.__setattr__(self, name, value)
        count = self.min_attempts_for_rate
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValidationError(f"min_attempts_for_rate must be an integer >= 1, got {count!r}")
        if self.critical_overdue_seconds < self.overdue_after_seconds:
            raise ValidationError(
                f"critical_overdue_seconds ({self.critical_overdue_seconds:g}) must be at least "
                f"overdue_after_seconds ({self.overdue_after_seconds:g})"
            )
        if self.critical_backlog_seconds < self.backlog_after_seconds:
            raise ValidationError(
                f"critical_backlog_seconds ({self.critical_backlog_seconds:g}) must be at least "
                f"backlog_after_seconds ({self.backlog_after_seconds:g})"
            )
        if self.degraded_failure_rate > self.critical_failure_rate:
            raise ValidationError(
                f"degraded_failure_rate ({self.degraded_failure_rate:g}) must be at most "
                f"critical_failure_rate ({self.critical_failure_rate:g})"
            )


def _number(name: str, value: object, *, minimum: float) -> float:
    """Return ``value`` as a finite float ``>= minimum`` or raise ``ValidationError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise ValidationError(f"{name} must be at least {minimum:g}, got {value!r}")
    return float(value)
