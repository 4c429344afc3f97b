"""Importing records in bulk: check everything first, then write it all in one transaction.

Two passes, so a bad line anywhere means nothing is written (SPEC section 8):

1. ``check`` reads the numbered records once, checks and normalizes each (``records.Checker``), keeps
   the problems by number and drops later duplicates of an ``(event_type, key)`` (the first wins). The
   checked records are parked in a ``Spool`` (serialized chunks in a temporary file that stays in
   memory while small), so a large input is neither held in memory nor read twice; only the set of keys is.
2. ``write`` runs in the caller's write transaction: it drops the keys the database already has (one
   query per chunk of keys; none on SQLite when the database has no events), takes event ids in advance
   (``storage.bulk``) and builds plain row tuples; SQLite inserts each table's rows of a chunk with one
   ``executemany``, PostgreSQL streams each table's rows of all chunks through one ``COPY`` (see ``write``).
   The counters get one aggregated delta at the end, from totals the checking pass kept.
"""

from __future__ import annotations

import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, insert, select

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.progress import Progress
from failure_aware.domain.records import ImportReport
from failure_aware.events import counters, totals
from failure_aware.events.recording import failure_fingerprint
from failure_aware.interchange import history
from failure_aware.interchange.exporter import CLUSTER_NOTE
from failure_aware.interchange.forms import FAILED, IN_FLIGHT, OK, PENDING, ImportContext
from failure_aware.interchange.inputs import ARCHIVE_MANIFEST, Malformed
from failure_aware.interchange.records import Checker, parse_cluster_note
from failure_aware.interchange.spool import Spool
from failure_aware.storage import bulk, chain
from failure_aware.storage.tables import annotation, attempt, event_detected, event_state, transition

MAX_LISTED_PROBLEMS = 20
MAX_CLUSTER_NOTES = 100_000  # held in memory during one import (they are few: people write them)
# Events whose rows are built at a time (SQLite: one ``executemany`` per table and chunk). Small, so that the
# chunk's records die young (see ``spool.Spool``). The queries made per chunk cost little on SQLite (the
# largest id; the existing keys, unless the database has no events); PostgreSQL groups them by
# ``KEYS_PER_QUERY`` keys.
ROWS_CHUNK = 1000
KEYS_PER_QUERY = 5000

# The columns each table's rows are built for, in order.
CHAIN = ("chain_seq", "chain_hash")  # each row's place in its event's hash chain (``core.chain``)
EVENT_COLUMNS = ("id", "event_type", "key", "payload", "detected_at_us", "recorded_at_us", *CHAIN)
STATE_COLUMNS = (
    "event_id", "event_type", "state", "detected_at_us", "attempt_count", "budget_failures",
    "next_retry_at_us", "due_at_us", "claim_token", "claimed_by", "claimed_at_us", "lease_expires_at_us",
    "claim_forced", "last_error_type", "last_error", "last_attempt_at_us", "updated_at_us", *CHAIN,
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "event_id", "event_type", "number", "started_at_us", "at_us", "outcome", "error_type", "error",
    "fingerprint", "forced", "actor", "traceback", "duration_us", "detail", *CHAIN,
)  # fmt: skip
TRANSITION_COLUMNS = ("event_id", "at_us", "from_state", "to_state", "actor", "reason", "attempt_number",
                      *CHAIN)
ANNOTATION_COLUMNS = ("event_id", "author", "at_us", "text", *CHAIN)


# Positions in the plain tuples the spool holds (``model.to_plain``): EventIn.event_type, EventIn.key,
# EventIn.attempts, EventIn.annotations, EventIn.transitions, AttemptIn.at_us, TransitionIn.to_state; and
# what the checking pass adds after EventIn's fields: the chain hashes of the event's rows and the
# fingerprints of its attempts (``_Chains``).
EVENT_TYPE, KEY, ATTEMPTS, ANNOTATIONS, TRANSITIONS, AT, TO_STATE = 1, 2, 5, 6, 7, 0, 2
HASHES, FINGERPRINTS = 10, 11
Numbered = Iterable[tuple[int, Any]]  # (line or record number, a parsed record or a Malformed)
# ``on_progress(phase, done, total)``: how far a long step is (``inputs``: "read", "check"; here: "write",
# done and total in events). A plain callback: the CLI draws it, this layer knows nothing of terminals.


@dataclass
class Checked:
    """The outcome of the checking pass: valid records (spooled), problems, in-input duplicates."""

    spool: Spool
    label: str  # "line", "record", "legacy event": what the numbers count
    invalid: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0
    # Totals of the spooled records (the writer takes out those that exist already).
    ends: Counter[counters.Key] = field(default_factory=Counter)  # events by (event_type, final state)
    attempts: int = 0
    annotations: int = 0
    # Cluster notes (SPEC 8), held as they are: (event type, span start, span end, at, author, text).
    cluster_notes: list[tuple[str, int, int, int, str, str]] = field(default_factory=list)

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
    parse = Checker(ctx).plain
    park = checked.spool.add
    chains = _Chains(ctx)
    ends = checked.ends
    attempts = annotations = 0
    try:
        for number, raw in numbered:
            if type(raw) is Malformed:
                checked.invalid.append((number, raw.message))
                continue
            try:
                if isinstance(raw, dict) and "kind" in raw:
                    _other_kind(raw, ctx, checked)
                    continue
                record = parse(raw, number)
            except ValidationError as exc:
                checked.invalid.append((number, str(exc)))
                continue
            pair = (record[EVENT_TYPE], record[KEY])
            if pair in seen:
                checked.duplicates += 1
                continue
            seen.add(pair)
            park((*record, *chains.of(record)))
            ends[(pair[0], record[TRANSITIONS][-1][TO_STATE])] += 1
            attempts += len(record[ATTEMPTS])
            annotations += len(record[ANNOTATIONS])
    except BaseException:
        checked.spool.close()
        raise
    checked.attempts, checked.annotations = attempts, annotations
    return checked


# Lines of an archive file (SPEC 15, docs/retention.md) that an import reads past: the manifest, and the
# clusters the archive took along for the record (clusters are derived: ``correlate`` recomputes them).
ARCHIVE_KINDS = frozenset({ARCHIVE_MANIFEST, "archived_cluster"})


def _other_kind(raw: dict[str, Any], ctx: ImportContext, checked: Checked) -> None:
    """A record that is not an event: a cluster note, kept for ``write``; an archive's manifest or one of
    its clusters, read past."""
    if raw["kind"] in ARCHIVE_KINDS:
        return
    if raw["kind"] != CLUSTER_NOTE:
        raise ValidationError(f"kind {raw['kind']!r} is unknown: a line is an event, or a "
                              f"{{\"kind\": \"{CLUSTER_NOTE}\", ...}}")
    note = parse_cluster_note(raw, ctx)
    if len(checked.cluster_notes) >= MAX_CLUSTER_NOTES:
        raise ValidationError(f"more than {MAX_CLUSTER_NOTES} cluster notes in one import")
    if note not in checked.cluster_notes:
        checked.cluster_notes.append(note)


def _write_cluster_notes(conn: Connection, notes: list[tuple[str, int, int, int, str, str]]) -> int:
    """Insert the cluster notes the database does not hold yet (a re-import adds none); returns how many."""
    a = annotation.c
    added = 0
    for event_type, start, end, at, author, text in notes:
        exists = conn.execute(select(a.id).where(
            a.event_id.is_(None), a.cluster_event_type == event_type, a.span_start_us == start,
            a.span_end_us == end, a.at_us == at, a.author == author, a.text == text,
        ).limit(1)).first()
        if exists is None:
            values = {"cluster_event_type": event_type, "span_start_us": start, "span_end_us": end,
                      "at_us": at, "author": author, "text": text}
            chain.link_note(conn, event_type, values)  # chained per event type, like notes added by hand
            conn.execute(insert(annotation).values(**values))
            added += 1
    return added


def write(conn: Connection, checked: Checked, ctx: ImportContext, *, on_progress: Progress | None = None
          ) -> ImportReport:
    """Write the checked records in the caller's transaction; existing ``(event_type, key)`` are skipped.

    SQLite: chunk by chunk, each table's rows of the chunk in one ``executemany``. PostgreSQL: a first pass
    over the spool finds the existing keys and takes the ids (one query each per ``KEYS_PER_QUERY``
    records), then one ``COPY`` per table is fed by a pass over the whole spool, so the server inserts while
    the next rows are being built (a COPY per table and chunk made the client wait for the server at the
    end of each). Either way the records are read in small chunks (``ROWS_CHUNK``).

    ``on_progress("write", done, total)`` follows the events written, chunk by chunk; on PostgreSQL, where
    each table is a pass over all the events, ``done`` moves through the passes (an estimate in events).
    """
    rows = _Rows(ctx, checked)
    check_keys = not bulk.alone_in_empty_database(conn)
    total = checked.spool.count
    if conn.dialect.name != "postgresql":
        done = 0
        for chunk in checked.spool.chunks(ROWS_CHUNK):
            ids = _event_ids(conn, [(r[EVENT_TYPE], r[KEY]) for r in chunk], check_keys)
            for table, columns, build in rows.tables():
                bulk.insert_rows(conn, table, columns, build(chunk, ids))
            done += len(chunk)
            if on_progress is not None:
                on_progress("write", done, total)
    else:
        rows.progress = _PassProgress(on_progress, total, passes=1 + sum(
            rows.has_rows(table) for table, _, _ in rows.tables()))
        all_ids = array("q")
        pairs: list[tuple[str, str]] = []
        for chunk in checked.spool.chunks(ROWS_CHUNK):
            pairs += [(r[EVENT_TYPE], r[KEY]) for r in chunk]
            if len(pairs) >= KEYS_PER_QUERY:
                all_ids.extend(_event_ids(conn, pairs, check_keys))
                pairs = []
            rows.progress.advance(len(chunk))
        all_ids.extend(_event_ids(conn, pairs, check_keys))
        for table, columns, build in rows.tables():
            if table is event_detected:
                _insert_events_pg(conn, checked.spool, all_ids, rows)
            elif rows.has_rows(table):
                bulk.insert_rows(conn, table, columns,
                                 _across_chunks(checked.spool, all_ids, build, rows.progress))
    counters.apply(conn, rows.delta)
    totals.apply(conn, rows.attempt_delta)
    notes = _write_cluster_notes(conn, checked.cluster_notes)
    return ImportReport(
        imported=rows.events,
        skipped_existing=checked.duplicates + rows.skipped,
        invalid=tuple(checked.invalid),
        attempts=rows.attempts,
        annotations=rows.annotations + notes,
    )


def _insert_events_pg(conn: Connection, spool: Spool, ids: array[int], rows: _Rows) -> None:
    """PostgreSQL: insert the events, skipping keys a concurrent writer inserted after ours were looked up.

    Other writers go on while an import runs, so a ``detect`` may commit one of its keys after
    ``existing_keys`` looked: a plain ``COPY`` would then fail the whole import on the unique key. The rows
    go through a temporary table instead, and ``INSERT ... ON CONFLICT DO NOTHING`` (which waits for a
    writer still holding the key, then skips it if that writer commits) moves them over. The events it
    skipped are taken out of ``ids`` (0: skip) and of the totals, so their other rows are not written and
    they count as skipped, as a key found by the lookup does.
    """
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE fa_import_event (LIKE event_detected INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    bulk.insert_rows(conn, bulk.staging(event_detected, "fa_import_event"), EVENT_COLUMNS,
                     _across_chunks(spool, ids, rows.event_rows, rows.progress))
    names = ", ".join(EVENT_COLUMNS)
    inserted = conn.exec_driver_sql(
        f"WITH moved AS (INSERT INTO event_detected ({names}) SELECT {names} FROM fa_import_event "
        "ON CONFLICT (event_type, key) DO NOTHING RETURNING 1) SELECT count(*) FROM moved"
    ).scalar_one()
    if inserted == rows.events:
        return
    lost = {r[0] for r in conn.exec_driver_sql(
        "SELECT s.id FROM fa_import_event s "
        "WHERE NOT EXISTS (SELECT 1 FROM event_detected e WHERE e.id = s.id)"
    )}
    position = 0
    for chunk in spool.chunks(ROWS_CHUNK):
        for record in chunk:
            if ids[position] in lost:
                ids[position] = 0
                rows.skip(record)
            position += 1


def _event_ids(conn: Connection, pairs: list[tuple[str, str]], check_keys: bool) -> list[int]:
    """The id of each ``(event_type, key)`` of ``pairs``, in order, or 0 for one that exists."""
    existing = bulk.existing_keys(conn, pairs) if check_keys and pairs else None
    if not existing:
        return bulk.allocate_event_ids(conn, len(pairs))
    fresh = [pair not in existing for pair in pairs]
    ids = iter(bulk.allocate_event_ids(conn, sum(fresh)))
    return [next(ids) if is_fresh else 0 for is_fresh in fresh]


Builder = Callable[[list[tuple[Any, ...]], Sequence[int]], Iterator[tuple[Any, ...]]]


def _across_chunks(
    spool: Spool, ids: array[int], build: Builder, progress: _PassProgress | None = None
) -> Iterator[tuple[Any, ...]]:
    """The rows ``build`` makes of every chunk of ``spool``, the records numbered by ``ids`` in order."""
    start = 0
    for chunk in spool.chunks(ROWS_CHUNK):
        end = start + len(chunk)
        yield from build(chunk, ids[start:end])
        start = end
        if progress is not None:
            progress.advance(len(chunk))


class _PassProgress:
    """Progress of a write made of ``passes`` passes over ``total`` events (PostgreSQL), told in events."""

    def __init__(self, on_progress: Progress | None, total: int, *, passes: int) -> None:
        self.on_progress, self.total, self.passes = on_progress, total, max(passes, 1)
        self.records = 0  # records gone through, over all passes

    def advance(self, records: int) -> None:
        self.records += records
        if self.on_progress is not None:
            self.on_progress("write", min(self.total, self.records // self.passes), self.total)


class _Rows:
    """The rows of every table, built from the spooled records, and the running totals.

    Records arrive as ``model.to_plain`` made them (the fields of ``EventIn``, ``AttemptIn``, ... in order),
    unpacked here rather than rebuilt; each builder takes a chunk and its ids (0: skip the record) and
    yields row tuples in the order of its table's columns. These loops run once per imported event.
    """

    def __init__(self, ctx: ImportContext, checked: Checked) -> None:
        self.ctx = ctx
        # The totals of every spooled record; ``event_rows`` takes out those of the records it skips.
        self.delta: Counter[counters.Key] = Counter(checked.ends)
        self.events, self.skipped = checked.spool.count, 0
        self.attempts, self.annotations = checked.attempts, checked.annotations
        self.attempt_delta: Counter[totals.Key] = Counter()  # filled as attempt rows are built
        self.progress = _PassProgress(None, 0, passes=1)  # PostgreSQL's write passes (``write``)

    def tables(self) -> list[tuple[Table, tuple[str, ...], Builder]]:
        """(table, columns, row builder), parents first (foreign keys)."""
        return [
            (event_detected, EVENT_COLUMNS, self.event_rows),
            (event_state, STATE_COLUMNS, self.state_rows),
            (attempt, ATTEMPT_COLUMNS, self.attempt_rows),
            (transition, TRANSITION_COLUMNS, self.transition_rows),
            (annotation, ANNOTATION_COLUMNS, self.annotation_rows),
        ]

    def has_rows(self, table: Table) -> bool:
        """Whether the counted records give ``table`` any row (an empty COPY still costs a round trip)."""
        if table is attempt:
            return self.attempts > 0
        if table is annotation:
            return self.annotations > 0
        return self.events > 0

    def skip(self, record: tuple[Any, ...]) -> None:
        """Take a record that exists already out of the totals."""
        self.events -= 1
        self.skipped += 1
        self.attempts -= len(record[ATTEMPTS])
        self.annotations -= len(record[ANNOTATIONS])
        self.delta[(record[EVENT_TYPE], record[TRANSITIONS][-1][TO_STATE])] -= 1

    def event_rows(self, chunk: list[tuple[Any, ...]], ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        """The ``event_detected`` rows (the first builder to see each record: it counts the skipped ones)."""
        now_us = self.ctx.now_us
        for event_id, record in zip(ids, chunk, strict=True):
            if event_id:
                _, event_type, key, detected_at_us, payload_json, *_ = record
                yield (event_id, event_type, key, payload_json, detected_at_us, now_us, 0, record[HASHES][0])
            else:
                self.skip(record)

    def attempt_rows(self, chunk: list[tuple[Any, ...]], ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        delta = self.attempt_delta
        for event_id, record in zip(ids, chunk, strict=True):
            if not event_id:
                continue
            event_type, hashes, fingerprints = record[EVENT_TYPE], record[HASHES], record[FINGERPRINTS]
            for number, values in enumerate(record[ATTEMPTS], 1):
                (at_us, outcome, started_at_us, error_type, error, forced, actor, traceback, duration_us,
                 detail) = values
                delta[(event_type, outcome)] += 1
                yield (
                    event_id, event_type, number, started_at_us, at_us, outcome, error_type, error,
                    fingerprints[number - 1], forced, actor, traceback, duration_us, detail, number,
                    hashes[number],
                )  # fmt: skip

    def transition_rows(self, chunk: list[tuple[Any, ...]], ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        for event_id, record in zip(ids, chunk, strict=True):
            if event_id:
                hashes, first = record[HASHES], 1 + len(record[ATTEMPTS])
                for seq, values in enumerate(record[TRANSITIONS], first):
                    yield (event_id, *values, seq, hashes[seq])

    def annotation_rows(self, chunk: list[tuple[Any, ...]], ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        for event_id, record in zip(ids, chunk, strict=True):
            if event_id:
                hashes, first = record[HASHES], 1 + len(record[ATTEMPTS]) + len(record[TRANSITIONS])
                for seq, (at_us, author, text) in enumerate(record[ANNOTATIONS], first):
                    yield (event_id, author, at_us, text, seq, hashes[seq])

    def state_rows(self, chunk: list[tuple[Any, ...]], ids: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        """The ``event_state`` row the replayed history leaves (the columns ``recording`` keeps)."""
        now_us = self.ctx.now_us
        for event_id, record in zip(ids, chunk, strict=True):
            if not event_id:
                continue
            _, event_type, _, detected_at_us, _, attempts, _, transitions, next_retry, budget, *_ = record
            hashes = record[HASHES]
            last_at_us, _, state, last_actor, _, _ = transitions[-1]
            if next_retry is None and state == FAILED:  # a retry time drawn from the event id (jitter)
                policy = self.ctx.policies.for_type(event_type)  # a FAILED event's last attempt failed
                next_retry = history.next_retry_us(policy, budget, attempts[-1][AT], event_id)
            due = last_at_us if state == PENDING else next_retry if state == FAILED else None
            if state == IN_FLIGHT:
                # The claim's holder is not here to finish it: a lease of one microsecond, expired as soon as
                # its claim time has passed, lets `recover` close it (the original token is not exported).
                claim: tuple[Any, ...] = (uuid.uuid4().hex, last_actor, last_at_us, last_at_us + 1)
            else:
                claim = _NO_CLAIM
            error_type = error = last_attempt_at_us = None
            if attempts:
                last_attempt_at_us, outcome, _, error_type, error = attempts[-1][:5]
                if outcome == OK:
                    error_type = error = None
            yield (
                event_id, event_type, state, detected_at_us, len(attempts), budget, next_retry, due,
                *claim, False, error_type, error, last_attempt_at_us, now_us, len(hashes) - 1, hashes[-1],
            )  # fmt: skip


class _Chains:
    """The chain hashes of a checked record's rows (``core.chain``), computed once, in the checking pass,
    and the fingerprints of its failed attempts (which the attempt rows' hashes cover).

    An imported event's chain is its event row (position 0), its attempts, its transitions, then its notes,
    in that order; the ids are not hashed (see ``core.chain``), so none is needed yet.
    """

    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self._fingerprints: dict[tuple[str | None, str | None], str] = {}

    def of(self, record: tuple[Any, ...]) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
        """(the hashes of the record's rows by position, the fingerprint of each attempt)."""
        _, event_type, key, detected_at_us, payload_json, attempts, annotations, transitions, *_ = record
        head = chain.link(chain.EMPTY, "event_detected", {
            "event_type": event_type, "key": key, "payload": payload_json, "detected_at_us": detected_at_us,
            "recorded_at_us": self.ctx.now_us})
        hashes = [head.hash]
        fingerprints: list[str | None] = []
        for number, values in enumerate(attempts, 1):
            (at_us, outcome, started_at_us, error_type, error, forced, actor, traceback, duration_us,
             detail) = values
            fingerprint = None if outcome == OK else self._fingerprint(error_type, error)
            fingerprints.append(fingerprint)
            head = chain.link(head, "attempt", {
                "event_type": event_type, "number": number, "started_at_us": started_at_us, "at_us": at_us,
                "outcome": outcome, "error_type": error_type, "error": error, "fingerprint": fingerprint,
                "forced": forced, "actor": actor, "traceback": traceback, "duration_us": duration_us,
                "detail": detail})
            hashes.append(head.hash)
        for at_us, from_state, to_state, actor, reason, attempt_number in transitions:
            head = chain.link(head, "transition", {
                "at_us": at_us, "from_state": from_state, "to_state": to_state, "actor": actor,
                "reason": reason, "attempt_number": attempt_number})
            hashes.append(head.hash)
        for at_us, author, text in annotations:
            head = chain.link(head, "annotation", {"author": author, "at_us": at_us, "text": text})
            hashes.append(head.hash)
        return tuple(hashes), tuple(fingerprints)

    def _fingerprint(self, error_type: str | None, error: str | None) -> str:
        key = (error_type, error)
        found = self._fingerprints.get(key)
        if found is None:
            if len(self._fingerprints) > 100_000:  # bound the cache; repeated messages are the common case
                self._fingerprints.clear()
            found = self._fingerprints[key] = failure_fingerprint(error_type, error)
        return found


_NO_CLAIM = (None, None, None, None)
