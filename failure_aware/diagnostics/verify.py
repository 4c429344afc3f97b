"""``verify``: check that the derived data still agrees with history, and that history is protected.

Five checks, all read-only (SPEC sections 1, 9 and 14):

(a) the projection: every ``event_state`` row equals a replay of its event's transitions and attempts, and
    the history itself is a legal chain (``replay.event_problems``);
(b) the counters: ``state_count`` equals a recount of ``event_state``;
(c) the immutability triggers are all in place (by name here; by what they do in ``triggers.probe``,
    which ``Ledger.verify`` runs in a transaction of its own that is always rolled back);
(d) the clusters in ``failure_cluster`` equal a rebuild (``correlation.clusters_match_rebuild``), and the
    incidents a rebuild from them (``correlation.incidents_match_rebuild``);
(e) tamper evidence: every event's hash chain (its event row, attempts, transitions, notes) and every
    event type's chain of cluster notes recomputes from the rows and ends at the head its projection
    row keeps (``core.chain``); the heads are folded into one digest of all history;
(f) retention (SPEC 15): what recorded archives removed is accounted for: their digest parts are folded
    into the digest (so it is the same before and after an archive), their attempts into the attempt
    totals, the heads of archived cluster notes start the chains that remain; no archive guard is left
    open.

The history is streamed in id-ordered chunks of events (four queries per chunk, never one per event), so
memory stays constant on millions of events. Run it inside one snapshot (``Store.read(snapshot=True)``:
REPEATABLE READ on PostgreSQL) so every chunk sees the same moment even while workers keep writing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Select, select

from failure_aware.correlation import clusters_match_rebuild, incidents_match_rebuild
from failure_aware.diagnostics.replay import event_problems
from failure_aware.domain.policy import PolicySet
from failure_aware.domain.progress import Progress
from failure_aware.events import counters, totals
from failure_aware.retention.accounting import Archived, archived
from failure_aware.storage import chain, triggers
from failure_aware.storage.tables import (
    annotation,
    attempt,
    event_detected,
    event_state,
    note_chain,
    transition,
)

DEFAULT_BATCH_SIZE = 1000
DEFAULT_MAX_PROBLEMS = 1000
# ``on_progress(phase, done, total)``: "verify" after each chunk of events, "clusters" as the failures are
# read again for the cluster check; totals come from the counters (no scan of history to count it).


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found. ``problems`` are disagreements (the ledger is not consistent); ``notes`` are
    observations that need no repair (e.g. a ``next_retry_at`` that an older retry policy computed)."""

    problems: tuple[str, ...]
    checked_events: int
    notes: tuple[str, ...] = ()
    clusters_checked: bool = True  # whether failure_cluster was compared with a rebuild
    digest: str | None = None  # one digest of all history (every chain's head; ``verify --digest``)
    digest_rows: int = 0  # the history rows it covers

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "checked_events": self.checked_events,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "clusters_checked": self.clusters_checked,
            "digest": self.digest,
            "digest_rows": self.digest_rows,
        }


class _Findings:
    """Problems and notes, each kept up to a limit (then only counted) so a ruined database cannot exhaust
    memory; the report says how many were left out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.more_problems = 0
        self.more_notes = 0

    def problem(self, *messages: str) -> None:
        for message in messages:
            if len(self.problems) < self.limit:
                self.problems.append(message)
            else:
                self.more_problems += 1

    def note(self, *messages: str) -> None:
        for message in messages:
            if len(self.notes) < self.limit:
                self.notes.append(message)
            else:
                self.more_notes += 1

    def report(self, checked_events: int, digest: chain.Digest) -> VerifyReport:
        problems = self.problems + [f"... and {self.more_problems} more problems"] * bool(self.more_problems)
        notes = self.notes + [f"... and {self.more_notes} more notes"] * bool(self.more_notes)
        return VerifyReport(tuple(problems), checked_events, tuple(notes), digest=digest.hexdigest(),
                            digest_rows=digest.rows)


def verify(
    conn: Connection,
    policies: PolicySet,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Run every check over the database of ``conn``; writes nothing."""
    findings = _Findings(max_problems)
    digest = chain.Digest()
    gone = archived(conn)
    checked = _check_events(conn, policies, findings, batch_size, digest, on_progress)
    _check_note_chains(conn, findings, digest, gone)
    for part, chains, rows in gone.parts:
        digest.fold(part, chains, rows)
    if gone.guard_rows:
        findings.problem(f"archive_guard holds {gone.guard_rows} committed row(s): every DELETE of history "
                         "is let through while it does (an archive writes it only inside its own "
                         "transaction); delete them")
    _check_counters(conn, findings)
    _check_attempt_totals(conn, findings, gone)
    findings.problem(*(f"immutability trigger {name} is missing" for name in triggers.missing(conn)))
    _check_clusters(conn, findings, on_progress)
    return findings.report(checked, digest)


# -- (a) projection vs replay ------------------------------------------------------------------------
def _check_events(
    conn: Connection, policies: PolicySet, findings: _Findings, batch_size: int, digest: chain.Digest,
    on_progress: Progress | None = None,
) -> int:
    total = sum(counters.stored(conn).values()) if on_progress is not None else None
    checked = 0
    after = 0  # ids are positive
    while True:
        events = conn.execute(
            select(event_detected).where(event_detected.c.id > after).order_by(event_detected.c.id)
            .limit(batch_size)
        ).all()
        # The last chunk reaches to the end, so rows of events that do not exist are found too.
        upto = events[-1].id if len(events) == batch_size else None
        es, tr, at, an = event_state.c, transition.c, attempt.c, annotation.c
        projections = {r.event_id: r for r in _chunk(conn, select(event_state), es.event_id, after, upto)}
        # Whole rows: the chains cover every column.
        history = _grouped(_chunk(conn, select(transition), tr.event_id, after, upto, tr.id))
        tries = _grouped(_chunk(conn, select(attempt), at.event_id, after, upto, at.number))
        notes = _grouped(_chunk(conn, select(annotation), an.event_id, after, upto, an.id))
        for event in events:
            projection = projections.pop(event.id, None)
            transitions, attempts = history.pop(event.id, ()), tries.pop(event.id, ())
            problems, remarks = event_problems(
                event, projection, transitions, attempts, policies.for_type(event.event_type),
            )
            findings.problem(*problems)
            findings.note(*remarks)
            rows = [("event_detected", event._mapping)]
            rows += [("transition", r._mapping) for r in transitions]
            rows += [("attempt", r._mapping) for r in attempts]
            rows += [("annotation", r._mapping) for r in notes.pop(event.id, ())]
            findings.problem(*_chain_problems(f"event {event.id}", rows, projection, chain.GENESIS))
            digest.add(str(event.id), chain.check(rows)[0])
        for table, orphans in (("event_state", projections), ("transition", history), ("attempt", tries),
                               ("annotation", notes)):
            findings.problem(*(f"{table} has rows for event {i}, never detected" for i in sorted(orphans)))
        checked += len(events)
        if on_progress is not None:
            on_progress("verify", checked, max(checked, total or 0) if upto is None else total)
        if upto is None:
            return checked
        after = upto


def _chain_problems(
    where: str, rows: list[tuple[str, Any]], head_row: Any | None, start: str | chain.Head
) -> list[str]:
    """Problems of one chain: a row that does not match, a gap or repeat, or an end other than the head
    its projection (or ``note_chain``) row keeps."""
    head, problem = chain.check(rows, start)
    if problem is not None:
        return [f"{where}: history was altered past the triggers: {problem}"]
    if head_row is None:
        return []
    kept = chain.head_of(head_row)
    if (kept.seq, kept.hash) != (head.seq, head.hash):
        return [f"{where}: history was altered past the triggers: its chain ends at position {head.seq}, "
                f"but the last row written was position {kept.seq} (rows removed from the end, or added)"]
    return []


def _check_note_chains(conn: Connection, findings: _Findings, digest: chain.Digest, gone: Archived) -> None:
    """(e) for cluster notes: one chain per event type, its head in ``note_chain``; a chain whose start
    was archived continues from the head the archive record keeps."""
    an = annotation.c
    notes = conn.execute(
        select(annotation).where(an.event_id.is_(None)).order_by(an.cluster_event_type, an.id)
    )
    by_type = {t: [("annotation", r._mapping) for r in rows]
               for t, rows in groupby(notes, key=lambda r: r.cluster_event_type)}
    heads = {r.event_type: r for r in conn.execute(select(note_chain))}
    for event_type in sorted(set(by_type) | set(heads)):
        rows = by_type.get(event_type, [])
        start: str | chain.Head = gone.note_starts.get(event_type) or chain.note_genesis(event_type)
        where = f"cluster notes of {event_type}"
        head_row = heads.get(event_type)
        if head_row is None and rows:
            findings.problem(f"{where}: no head in note_chain (rows added past the triggers?)")
        findings.problem(*_chain_problems(where, rows, head_row, start))
        digest.add(f"notes:{event_type}", chain.check(rows, start)[0])


def _chunk(
    conn: Connection, query: Select[Any], event_column: Any, after: int, upto: int | None, *order: Any
) -> Iterator[Any]:
    """Rows of ``query`` for events with ``after < id <= upto`` (no upper bound when ``upto`` is None)."""
    query = query.where(event_column > after)
    if upto is not None:
        query = query.where(event_column <= upto)
    yield from conn.execute(query.order_by(event_column, *order)).all()  # one fetchall, not a fetch per row


def _grouped(rows: Iterable[Any]) -> dict[int, Sequence[Any]]:
    return {event_id: list(group) for event_id, group in groupby(rows, key=lambda r: r.event_id)}


# -- (b) counters --------------------------------------------------------------------------------------
def _check_counters(conn: Connection, findings: _Findings) -> None:
    actual, stored = counters.recount(conn), counters.stored(conn)
    for key in sorted(set(actual) | set(stored)):
        if actual.get(key, 0) != stored.get(key, 0):
            event_type, state = key
            findings.problem(
                f"state_count says {stored.get(key, 0)} {event_type} events are {state}; "
                f"event_state has {actual.get(key, 0)}"
            )


def _check_attempt_totals(conn: Connection, findings: _Findings, gone: Archived) -> None:
    # attempt_total counts every attempt ever recorded (a Prometheus counter): archived ones included.
    actual, stored = Counter(totals.recount(conn)), totals.stored(conn)
    actual.update(gone.attempts)
    for key in sorted(set(actual) | set(stored)):
        if actual.get(key, 0) != stored.get(key, 0):
            event_type, outcome = key
            archived_part = f" and archives removed {gone.attempts[key]}" if gone.attempts.get(key) else ""
            findings.problem(
                f"attempt_total says {stored.get(key, 0)} {event_type} attempts {outcome}; "
                f"attempt has {actual.get(key, 0) - gone.attempts.get(key, 0)}{archived_part}"
            )


# -- (d) clusters ----------------------------------------------------------------------------------------
def _check_clusters(conn: Connection, findings: _Findings, on_progress: Progress | None = None) -> None:
    """The stored clusters must equal a rebuild (computed in memory; types with failures newer than the
    last ``correlate`` are left out by the check: they are stale by design until the next run)."""
    findings.problem(*clusters_match_rebuild(conn, on_progress=on_progress))
    findings.problem(*incidents_match_rebuild(conn))
