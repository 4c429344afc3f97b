"""Importing records in bulk: check everything first, then write it all in one transaction.

Two passes, so a bad line anywhere means nothing is written (SPEC section 8):

1. ``check`` reads the numbered records once, checks and normalizes each (``records.parse_record``), keeps
   the problems by number and drops later duplicates of an ``(event_type, key)`` (the first wins). The
   checked records are parked in a ``Spool`` (serialized chunks in a temporary file that stays in
   memory while small), so a large input is neither held in memory nor read twice; only the set of keys is.
2. ``write`` runs in the caller's write transaction: chunk by chunk it drops the keys the database already
   has (one query per chunk), takes event ids in advance (``storage.bulk``), builds plain row tuples and
   inserts each table's rows at once (``COPY`` on PostgreSQL, ``executemany`` on SQLite). The counters get
   one aggregated delta at the end.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from ..core import counters
from ..core.recording import failure_fingerprint
from ..errors import ValidationError
from ..models import ImportReport
from ..storage import bulk
from ..storage.tables import annotation, attempt, event_detected, event_state, transition
from . import history
from .inputs import Malformed
from .model import FAILED, IN_FLIGHT, OK, PENDING, ImportContext
from .records import parse_record
from .spool import Spool

MAX_LISTED_PROBLEMS = 20

# The columns each table's rows are built for, in order.
EVENT_COLUMNS = ("id", "event_type", "key", "payload", "detected_at_us", "recorded_at_us")
STATE_COLUMNS = (
    "event_id", "event_type", "state", "detected_at_us", "attempt_count", "budget_failures",
    "next_retry_at_us", "due_at_us", "claim_token", "claimed_by", "claimed_at_us", "lease_expires_at_us",
    "claim_forced", "last_error_type", "last_error", "last_attempt_at_us", "updated_at_us",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "event_id", "event_type", "number", "started_at_us", "at_us", "outcome", "error_type", "error",
    "fingerprint", "forced", "actor",
)  # fmt: skip
TRANSITION_COLUMNS = ("event_id", "at_us", "from_state", "to_state", "actor", "reason", "attempt_number")
ANNOTATION_COLUMNS = ("event_id", "author", "at_us", "text")


# Positions in the plain tuples the spool holds (``model.to_plain``): EventIn.event_type, EventIn.key,
# AttemptIn.at_us, TransitionIn.to_state.
EVENT_TYPE, KEY, AT, TO_STATE = 1, 2, 0, 2
Numbered = Iterable[tuple[int, Any]]  # (line or record number, a parsed record or a Malformed)


@dataclass
class Checked:
    """The outcome of the checking pass: valid records (spooled), problems, in-input duplicates."""

    spool: Spool
    label: str  # "line", "record", "legacy event": what the numbers count
    invalid: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0

    def __enter__(self) -> Checked:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.spool.close()

    def refusal(self) -> ValidationError:
        """The error that refuses the whole input, listing the first problems by number."""
        count = len(self.invalid)
        shown = [
            f"  {self.label} {number}: {message}" for number, message in self.invalid[:MAX_LISTED_PROBLEMS]
        ]
        if count > MAX_LISTED_PROBLEMS:
            shown.append(f"  ... and {count - MAX_LISTED_PROBLEMS} more")
        plural = "s" if count != 1 else ""
        return ValidationError(
            f"import refused, nothing was written: {count} invalid {self.label}{plural}\n"
            + "\n".join(shown)
            + f"\nfix them, or import with skip_invalid (--skip-invalid) to import the {self.spool.count} "
            "valid ones and report the rest"
        )


def check(numbered: Numbered, ctx: ImportContext, *, label: str) -> Checked:
    """The checking pass over all of the input; the caller closes the result (``with``)."""
    checked = Checked(spool=Spool(), label=label)
    seen: set[tuple[str, str]] = set()
    try:
        for number, raw in numbered:
            if isinstance(raw, Malformed):
                checked.invalid.append((number, raw.message))
                continue
            try:
                record = parse_record(raw, ctx, number)
            except ValidationError as exc:
                checked.invalid.append((number, str(exc)))
                continue
            pair = (record.event_type, record.key)
            if pair in seen:
                checked.duplicates += 1
                continue
            seen.add(pair)
            checked.spool.add(record)
    except BaseException:
        checked.spool.close()
        raise
    return checked


def write(conn: Connection, checked: Checked, ctx: ImportContext) -> ImportReport:
    """Write the checked records in the caller's transaction; existing ``(event_type, key)`` are skipped."""
    rows = _Rows(ctx)
    skipped = checked.duplicates
    for chunk in checked.spool.chunks():
        existing = bulk.existing_keys(conn, [(r[EVENT_TYPE], r[KEY]) for r in chunk])
        fresh = [r for r in chunk if (r[EVENT_TYPE], r[KEY]) not in existing] if existing else chunk
        skipped += len(chunk) - len(fresh)
        for event_id, record in zip(bulk.allocate_event_ids(conn, len(fresh)), fresh, strict=True):
            rows.add(event_id, record)
        rows.flush(conn)
    counters.apply(conn, rows.delta)
    return ImportReport(
        imported=rows.events,
        skipped_existing=skipped,
        invalid=tuple(checked.invalid),
        attempts=rows.attempts,
        annotations=rows.annotations,
    )


class _Rows:
    """Row tuples of one chunk for every table, and the running totals.

    Records arrive as ``model.to_plain`` made them (the fields of ``EventIn``, ``AttemptIn``, ... in order),
    unpacked here rather than rebuilt: this loop runs once per imported event.
    """

    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self.delta: Counter[counters.Key] = Counter()
        self.events = self.attempts = self.annotations = 0
        self._fingerprints: dict[tuple[str | None, str | None], str] = {}
        self._reset()

    def _reset(self) -> None:
        self.event_rows: list[tuple[Any, ...]] = []
        self.state_rows: list[tuple[Any, ...]] = []
        self.attempt_rows: list[tuple[Any, ...]] = []
        self.transition_rows: list[tuple[Any, ...]] = []
        self.annotation_rows: list[tuple[Any, ...]] = []

    def add(self, event_id: int, record: tuple[Any, ...]) -> None:
        """Add the rows of one event (``record`` as ``to_plain`` made it) under ``event_id``."""
        _, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions, _, _ = record
        self.event_rows.append((event_id, event_type, key, payload_json, detected_at_us, self.ctx.now_us))
        for number, values in enumerate(attempts, 1):
            at_us, outcome, started_at_us, error_type, error, forced, actor = values
            fingerprint = None if outcome == OK else self._fingerprint(error_type, error)
            self.attempt_rows.append((
                event_id, event_type, number, started_at_us, at_us, outcome, error_type, error, fingerprint,
                forced, actor,
            ))  # fmt: skip
        for at_us, from_state, to_state, actor, reason, attempt_number in transitions:
            self.transition_rows.append(
                (event_id, at_us, from_state, to_state, actor, reason, attempt_number)
            )
        for at_us, author, text in annotations:
            self.annotation_rows.append((event_id, author, at_us, text))
        self.state_rows.append(self._projection(event_id, record))
        self.delta[(event_type, transitions[-1][TO_STATE])] += 1
        self.events += 1
        self.attempts += len(attempts)
        self.annotations += len(annotations)

    def _projection(self, event_id: int, record: tuple[Any, ...]) -> tuple[Any, ...]:
        """The ``event_state`` row the replayed history leaves (the columns ``recording`` keeps)."""
        _, event_type, _, detected_at_us, _, attempts, _, transitions, next_retry, budget = record
        last_at_us, _, state, last_actor, _, _ = transitions[-1]
        if next_retry is None and state == FAILED:  # a FAILED event's last attempt failed
            policy = self.ctx.policies.for_type(event_type)
            next_retry = history.next_retry_us(policy, budget, attempts[-1][AT], event_id)
        due = last_at_us if state == PENDING else next_retry if state == FAILED else None
        if state == IN_FLIGHT:
            # The claim's holder is not here to finish it: a lease of one microsecond, expired as soon as
            # its claim time has passed, lets `recover` close it (the original token is not exported).
            claim: tuple[Any, ...] = (uuid.uuid4().hex, last_actor, last_at_us, last_at_us + 1)
        else:
            claim = (None, None, None, None)
        error_type = error = last_attempt_at_us = None
        if attempts:
            last_attempt_at_us, outcome, _, error_type, error, _, _ = attempts[-1]
            if outcome == OK:
                error_type = error = None
        return (
            event_id, event_type, state, detected_at_us, len(attempts), budget, next_retry, due,
            *claim, False, error_type, error, last_attempt_at_us, self.ctx.now_us,
        )  # fmt: skip

    def _fingerprint(self, error_type: str | None, error: str | None) -> str:
        key = (error_type, error)
        found = self._fingerprints.get(key)
        if found is None:
            if len(self._fingerprints) > 100_000:  # bound the cache; repeated messages are the common case
                self._fingerprints.clear()
            found = self._fingerprints[key] = failure_fingerprint(error_type, error)
        return found

    def flush(self, conn: Connection) -> None:
        """Insert the chunk's rows, parents first (foreign keys), and start a new chunk."""
        bulk.insert_rows(conn, event_detected, EVENT_COLUMNS, self.event_rows)
        bulk.insert_rows(conn, event_state, STATE_COLUMNS, self.state_rows)
        bulk.insert_rows(conn, attempt, ATTEMPT_COLUMNS, self.attempt_rows)
        bulk.insert_rows(conn, transition, TRANSITION_COLUMNS, self.transition_rows)
        bulk.insert_rows(conn, annotation, ANNOTATION_COLUMNS, self.annotation_rows)
        self._reset()
