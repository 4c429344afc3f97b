"""Reading a database of the seed's v0.1-v0.3 schema as interchange records (``import --legacy``).

The legacy file is opened read-only and only ``event_detected`` is read (``failure_cluster`` is left
behind: clusters are recomputed by ``correlate``; other tables are ignored). Each row becomes one record
with explicit ``transitions``, so it lands in exactly the state the legacy row had, whatever the retry
policy says; the records then go through the ordinary importer (one writer, one set of checks).

Mapping (also in docs/interchange.md), for a row with ``retry_count`` = r:

- key ``legacy-<id>``; payload ``event_payload`` (a JSON object); ``event_note`` -> annotation by ``legacy``
- SYNCED  -> SUCCEEDED: r failed attempts, then one succeeded attempt
- FAILED  -> FAILED: max(r, 1) failed attempts; ``next_retry_at`` kept when set, else from the policy
- PENDING -> PENDING when r = 0; with r > 0 the seed meant "failed, will retry": FAILED as above
- DEAD    -> DEAD: max(r, 1) failed attempts, the last one moving the event to DEAD

The legacy schema has no attempt times, so they are synthesized, deterministically: spread evenly between
``detected_at`` and the legacy ``next_retry_at`` when it is later (for FAILED all strictly before it, since
the next retry is still due; otherwise the last attempt lands on it), else one minute apart. Failed attempts
get error type ``LegacyError``. The seed kept one message per event, ``last_error``, overwritten on every
failure (for DEAD rows the generic "Max retries exceeded" it wrote when giving up): only the last failed
attempt carries it; the failures before it carry ``NOT_KEPT``, which says the seed did not keep their
message. A note's time is the event's last synthesized moment. Legacy times without a zone are taken as
UTC (the seed wrote UTC).

``tables_left_behind`` names the legacy tables that are not carried over (``failure_cluster``, recomputed by
``correlate``; the seed's ``domain_state``, ``failure_severity`` and any other), with their row counts, so
the import can say what it did not bring.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.timeutil import format_time, from_us, to_us
from failure_aware.interchange.inputs import Malformed
from failure_aware.interchange.records import MAX_DELAY_US

ACTOR = "legacy"
ERROR_TYPE = "LegacyError"
REQUIRED_COLUMNS = (
    "id",
    "event_type",
    "event_payload",
    "detected_at",
    "sync_status",
    "retry_count",
    "last_error",
)
OPTIONAL_COLUMNS = ("next_retry_at", "event_note")  # added in later seed versions
STATUSES = ("PENDING", "SYNCED", "FAILED", "DEAD")
STEP_US = 60 * 1_000_000  # spacing of synthesized attempts when the row gives no later time
# The error of a synthesized failure before the last one: the seed kept only its last error message.
NOT_KEPT = "(not kept by the legacy database)"
READ_TABLES = ("event_detected",)
RECOMPUTED = {"failure_cluster": "recomputed by `failure-aware correlate`, not copied"}
NOT_CARRIED = "not part of failure-aware's model: not imported"


class LegacySource:
    """An opened legacy database: its ``event_detected`` rows as numbered records (number = legacy id)."""

    def __init__(self, conn: sqlite3.Connection, columns: tuple[str, ...], path: Path) -> None:
        self._conn = conn
        self._columns = columns
        self.path = path

    def count(self) -> int:
        """How many rows ``event_detected`` holds (the total of a progress display)."""
        try:
            return int(self._conn.execute("SELECT count(*) FROM event_detected").fetchone()[0])
        except sqlite3.Error as exc:
            raise ValidationError(f"{self.path}: cannot read event_detected: {exc}") from None

    def tables_left_behind(self) -> list[tuple[str, int, str]]:
        """``(table, rows, what happens to it)`` for each legacy table the import does not carry over
        (SQLite's own ``sqlite_*`` tables aside), in name order."""
        try:
            names = [row[0] for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
            counted = [(name, int(self._conn.execute(_count_sql(name)).fetchone()[0]))
                       for name in names if name not in READ_TABLES]
        except sqlite3.Error as exc:
            raise ValidationError(f"{self.path}: cannot list its tables: {exc}") from None
        return [(name, rows, RECOMPUTED.get(name, NOT_CARRIED)) for name, rows in counted]

    def records(self) -> Iterator[tuple[int, Any]]:
        """``(legacy id, record)`` in id order; a row that cannot be mapped is a ``Malformed`` naming why."""
        names = ", ".join(self._columns)
        try:
            for values in self._conn.execute(f"SELECT {names} FROM event_detected ORDER BY id"):
                row = dict(zip(self._columns, values, strict=True))
                try:
                    yield int(row["id"]), record_from_row(row)
                except ValidationError as exc:
                    yield int(row["id"]), Malformed(str(exc))
        except sqlite3.Error as exc:
            raise ValidationError(f"{self.path}: cannot read event_detected: {exc}") from None


@contextmanager
def open_legacy(path: str | Path) -> Iterator[LegacySource]:
    """Open a legacy database read-only and check its schema; ``ValidationError`` names what is wrong."""
    file = Path(path)
    if not file.is_file():
        raise ValidationError(f"{file}: no such file (expected a SQLite database of failure-aware v0.1-v0.3)")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ValidationError(f"{file}: cannot open it read-only: {exc}") from None
    try:
        yield LegacySource(conn, _columns(conn, file), file)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, file: Path) -> tuple[str, ...]:
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        present = {row[1] for row in conn.execute("PRAGMA table_info(event_detected)")}
    except sqlite3.Error as exc:
        raise ValidationError(f"{file} is not a readable SQLite database ({exc})") from None
    if "failure_aware_schema" in tables:
        raise ValidationError(
            f"{file} is a failure-aware database of the current schema, not a legacy one: "
            "export it (export) and import the JSON Lines instead"
        )
    if not present:
        raise ValidationError(f"{file} has no event_detected table: not a failure-aware v0.1-v0.3 database")
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise ValidationError(
            f"{file}: event_detected lacks column(s) {', '.join(missing)}: not the v0.1-v0.3 schema"
        )
    return REQUIRED_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in present)


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The interchange record of one legacy ``event_detected`` row (the mapping of the module docstring)."""
    status = row["sync_status"]
    if status not in STATUSES:
        raise ValidationError(f"sync_status {status!r} is not one of {', '.join(STATUSES)}")
    retries = row["retry_count"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError(f"retry_count {retries!r} is not a non-negative integer")
    detected_us = _legacy_time(row["detected_at"], "detected_at")
    next_retry_us = _legacy_time(row["next_retry_at"], "next_retry_at") if row.get("next_retry_at") else None
    try:
        payload = json.loads(row["event_payload"])
    except (TypeError, ValueError):
        raise ValidationError("event_payload is not JSON") from None
    state = {"SYNCED": "SUCCEEDED", "DEAD": "DEAD", "FAILED": "FAILED"}.get(
        status, "FAILED" if retries else "PENDING"
    )
    failures = retries if state in ("SUCCEEDED", "PENDING") else max(retries, 1)
    outcomes = ["failed"] * failures + (["succeeded"] if state == "SUCCEEDED" else [])
    times = _attempt_times(detected_us, next_retry_us, len(outcomes), before_end=state == "FAILED")
    origin = f"imported from legacy (sync_status {status}, retry_count {retries})"
    transitions = [_step(detected_us, None, "PENDING", f"{origin}: detected", None)]
    attempts = []
    for number, (outcome, at_us) in enumerate(zip(outcomes, times, strict=True), 1):
        item: dict[str, Any] = {"at": _text(at_us), "outcome": outcome, "actor": ACTOR}
        if outcome == "failed":
            item["error_type"] = ERROR_TYPE
            if number < failures:  # an earlier failure: the seed overwrote its message
                item["error"] = NOT_KEPT
            elif row["last_error"] is not None:
                item["error"] = str(row["last_error"])
        attempts.append(item)
        target = "SUCCEEDED" if outcome == "succeeded" else state if number == len(outcomes) else "FAILED"
        transitions.append(
            _step(at_us, transitions[-1]["to_state"], target, f"{origin}: attempt {number} {outcome}", number)
        )
    record: dict[str, Any] = {
        "event_type": row["event_type"],
        "key": f"legacy-{row['id']}",
        "detected_at": _text(detected_us),
        "payload": payload,
        "attempts": attempts,
        "state": state,
        "transitions": transitions,
    }
    # Kept where it can hold (within a retry delay after the last synthesized failure), else from the policy.
    if state == "FAILED" and next_retry_us is not None and 0 <= next_retry_us - times[-1] <= MAX_DELAY_US:
        record["next_retry_at"] = _text(next_retry_us)
    if row.get("event_note"):
        last_us = times[-1] if times else detected_us
        record["annotations"] = [{"at": _text(last_us), "author": ACTOR, "text": str(row["event_note"])}]
    return record


def _attempt_times(detected_us: int, end_us: int | None, count: int, *, before_end: bool) -> list[int]:
    """``count`` attempt times after ``detected_us``, spread up to ``end_us`` when it is later."""
    if end_us is None or end_us <= detected_us:
        return [detected_us + STEP_US * i for i in range(1, count + 1)]
    slots = count + 1 if before_end else count
    span = end_us - detected_us
    return [detected_us + span * i // slots for i in range(1, count + 1)]


def _step(at_us: int, source: str | None, target: str, reason: str, number: int | None) -> dict[str, Any]:
    return {
        "at": _text(at_us),
        "from_state": source,
        "to_state": target,
        "actor": ACTOR,
        "reason": reason,
        "attempt_number": number,
    }


def _legacy_time(value: Any, column: str) -> int:
    if not isinstance(value, str):
        raise ValidationError(f"{column} {value!r} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{column} {value!r} is not an ISO 8601 time") from None
    return to_us(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _text(micros: int) -> str:
    return format_time(from_us(micros)) or ""


def _count_sql(table: str) -> str:
    """``SELECT count(*)`` of a table named by the legacy file itself (quoted as an identifier)."""
    return 'SELECT count(*) FROM "{}"'.format(table.replace('"', '""'))
