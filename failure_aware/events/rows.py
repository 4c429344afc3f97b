"""Turning database rows into the API's records."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row, Select, select

from failure_aware.domain.records import Annotation, Attempt, Event, Transition
from failure_aware.domain.states import Outcome, State
from failure_aware.domain.timeutil import from_us, opt_from_us
from failure_aware.storage.tables import event_detected, event_state


def event_select() -> Select[Any]:
    """The columns ``event_from_row`` needs: an event joined with its projection."""
    ed, es = event_detected, event_state
    return select(
        ed.c.id, ed.c.event_type, ed.c.key, ed.c.payload, ed.c.detected_at_us,
        es.c.state, es.c.attempt_count, es.c.next_retry_at_us, es.c.last_error_type, es.c.last_error,
        es.c.claimed_by, es.c.lease_expires_at_us, es.c.updated_at_us,
    ).join(es, es.c.event_id == ed.c.id)


def event_from_row(row: Row[Any]) -> Event:
    """An ``Event`` from a row of ``event_select``."""
    return Event(
        id=row.id,
        event_type=row.event_type,
        key=row.key,
        payload=json.loads(row.payload),
        detected_at=from_us(row.detected_at_us),
        state=State(row.state),
        attempt_count=row.attempt_count,
        next_retry_at=opt_from_us(row.next_retry_at_us),
        last_error_type=row.last_error_type,
        last_error=row.last_error,
        claimed_by=row.claimed_by,
        lease_expires_at=opt_from_us(row.lease_expires_at_us),
        updated_at=opt_from_us(row.updated_at_us),
    )


def attempt_from_row(row: Row[Any]) -> Attempt:
    """An ``Attempt`` from a row of the ``attempt`` table."""
    return Attempt(
        event_id=row.event_id,
        number=row.number,
        at=from_us(row.at_us),
        outcome=Outcome(row.outcome),
        started_at=opt_from_us(row.started_at_us),
        error_type=row.error_type,
        error=row.error,
        fingerprint=row.fingerprint,
        forced=bool(row.forced),
        actor=row.actor,
        traceback=row.traceback,
        duration_seconds=None if row.duration_us is None else row.duration_us / 1_000_000,
        detail=None if row.detail is None else json.loads(row.detail),
    )


def transition_from_row(row: Row[Any]) -> Transition:
    """A ``Transition`` from a row of the ``transition`` table."""
    return Transition(
        event_id=row.event_id,
        at=from_us(row.at_us),
        from_state=State(row.from_state) if row.from_state else None,
        to_state=State(row.to_state),
        actor=row.actor,
        reason=row.reason,
        attempt_number=row.attempt_number,
    )


def annotation_from_row(row: Row[Any]) -> Annotation:
    """An ``Annotation`` from a row of the ``annotation`` table."""
    return Annotation(
        id=row.id,
        author=row.author,
        at=from_us(row.at_us),
        text=row.text,
        event_id=row.event_id,
        cluster_event_type=row.cluster_event_type,
        span_start=opt_from_us(row.span_start_us),
        span_end=opt_from_us(row.span_end_us),
        cluster_id=row.cluster_id,
    )
