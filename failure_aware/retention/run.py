"""An archive from start to end (SPEC 15): select, write and sync the file, move the horizon, remove.

Order is what makes it safe to kill at any moment:
1. the events that may leave are read a page at a time (each page in a read transaction of its own) and
   written to ``.FILE.part``; nothing in the database changes;
2. the file gets its manifest line, is synced and named; killed before this, the database is untouched;
3. the correlation horizon moves to ``--before`` with a rebuild of the clusters (``horizon``);
4. the events leave a chunk per transaction, each with its ``archive`` record (``removal``); killed in
   between, the chunks committed are recorded and in the synced file, the others still in the database:
   ``verify`` is clean, and a rerun (with a new file name) archives the rest;
5. the cluster notes leave in a last transaction.
"""

from __future__ import annotations

import json
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection

from failure_aware.correlation import engine
from failure_aware.domain.progress import Progress
from failure_aware.domain.timeutil import format_time, from_us
from failure_aware.interchange import exporter
from failure_aware.retention import archive_file, horizon, pacing, removal, selection
from failure_aware.retention.archive_file import CLUSTER, FORMAT, MANIFEST, ArchiveWriter, check_target
from failure_aware.retention.report import ArchiveReport
from failure_aware.storage import chain

PAGE_EVENTS = 1000  # ids per page (selection.page): a window, not a count of events
# on_progress(phase, done, total): phases "write" (events written to the file) and "remove" (events removed)


class Transactions(Protocol):
    """What an archive needs of a ``Store``: read and write transactions."""

    dialect: str

    def read(self, *, snapshot: bool = False) -> AbstractContextManager[Connection]: ...

    def write(self) -> AbstractContextManager[Connection]: ...


@dataclass(frozen=True)
class Request:
    """What to archive: events finished before ``before_us`` (of ``event_type`` when given)."""

    before_us: int
    event_type: str | None
    target: Path | None
    dry_run: bool
    actor: str
    now_us: int
    chunk_events: int = removal.CHUNK_EVENTS
    max_busy: float = pacing.DEFAULT_MAX_BUSY


class _Tally:
    """Totals of what was selected (the manifest's and the dry run's figures)."""

    def __init__(self) -> None:
        self.events = self.attempts = self.transitions = self.annotations = 0
        self.by_type_state: Counter[tuple[str, str]] = Counter()
        self.first_detected_us: int | None = None
        self.last_activity_us: int | None = None
        self.bytes = 0

    def add(self, row: Any, record: dict[str, Any]) -> None:
        self.events += 1
        self.attempts += len(record["attempts"])
        self.transitions += len(record["transitions"])
        self.annotations += len(record["annotations"])
        self.by_type_state[(row.event_type, row.state)] += 1
        detected, last = int(row.detected_at_us), int(row.last_at_us or row.detected_at_us)
        self.first_detected_us = detected if self.first_detected_us is None else min(self.first_detected_us,
                                                                                      detected)
        self.last_activity_us = last if self.last_activity_us is None else max(self.last_activity_us, last)

    def nested(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for (event_type, state), n in sorted(self.by_type_state.items()):
            found.setdefault(event_type, {})[state] = n
        return found


def archive(store: Transactions, request: Request, progress: Progress | None = None) -> ArchiveReport:
    """Run one archive (or its dry run) as the module docstring describes."""
    archive_id = uuid.uuid4().hex
    pacer = pacing.Pacer(request.max_busy)
    if request.target is not None and not request.dry_run:
        check_target(request.target)  # before reading anything
    with store.read() as conn:
        total = selection.count(conn, request.before_us, request.event_type)
    tally = _Tally()
    if request.dry_run or request.target is None:  # a dry run: counts and sizes, nothing written
        for _rows, records in _paced(_pages(store, request, tally), pacer, _told(progress, tally, total)):
            tally.bytes += len(archive_file.lines(records))
        with store.read() as conn:
            notes = selection.note_prefixes(conn, request.before_us, request.event_type)
            clusters = selection.clusters_before(conn, request.before_us)
        return _report(archive_id, request, tally, notes=len(notes), clusters=len(clusters),
                       size=tally.bytes, dry_run=True)

    written = _write(store, request, archive_id, tally, progress, total, request.target, pacer)
    if written is None:
        return _report(archive_id, request, tally, notes=0, clusters=0, size=0, dry_run=False)
    # The file is on disk: from here on, history may leave.
    watermark = None
    if engine.watermark_first(store.dialect):
        with store.write() as conn:
            watermark = engine.settled_watermark(conn)
    with store.write() as conn:
        engine.begin(conn)
        horizon.advance(conn, request.before_us, request.now_us, watermark=watermark)
    chunk_record = removal.Record(archive_id, request.now_us, request.actor, request.before_us,
                                  request.event_type, str(request.target.resolve()), written.file_sha256)
    removed = kept = chunks = 0
    step = max(1, request.chunk_events)
    ids, keys = written.ids, written.keys
    for start in range(0, len(ids), step):
        with pacer.unit(), store.write() as conn:
            gone, changed = removal.remove_events(conn, chunk_record, chunks, ids[start:start + step],
                                                  keys[start:start + step])
        removed, kept, chunks = removed + gone, kept + changed, chunks + 1
        if progress is not None:
            progress("remove", min(start + step, len(ids)), len(ids))
    if written.notes:
        with store.write() as conn:
            removal.remove_notes(conn, chunk_record, chunks, written.notes)
        chunks += 1
    return _report(archive_id, request, tally, notes=len(written.notes), clusters=written.clusters,
                   size=written.size, dry_run=False, file_sha256=written.file_sha256, removed=removed,
                   kept=kept, chunks=chunks, digest=written.digest)


@dataclass
class _Written:
    """A synced archive file and what the removal needs of it: ids and chain head keys (16 bytes an event
    in two arrays: millions of events fit), the cluster notes."""

    file_sha256: str
    size: int
    digest: str
    ids: array[int]
    keys: array[int]
    notes: list[Any]
    clusters: int


def _write(store: Transactions, request: Request, archive_id: str, tally: _Tally, progress: Progress | None,
           total: int, target: Path, pacer: pacing.Pacer) -> _Written | None:
    """Steps 1 and 2: the file, synced and named; None (and no file) when nothing may leave."""
    writer = ArchiveWriter(target)
    ids: array[int] = array("q")
    keys: array[int] = array("Q")
    digest = chain.Digest()
    try:
        for rows, records in _paced(_pages(store, request, tally), pacer, _told(progress, tally, total)):
            writer.write_many(records)
            for row in rows:
                ids.append(int(row.id))
                keys.append(removal.head_key(row.chain_hash))
                digest.add(str(row.id), chain.head_of(row))
        with store.read(snapshot=True) as conn:
            notes = selection.note_prefixes(conn, request.before_us, request.event_type)
            clusters = selection.clusters_before(conn, request.before_us)
            for note in notes:
                writer.write(exporter.cluster_note_record(note))
            for cluster in clusters:
                writer.write(_cluster_record(cluster))
        if not ids and not notes:
            writer.abort()
            return None
        manifest = _manifest(archive_id, request, tally, len(notes), len(clusters), digest)
        file_sha256, size = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    return _Written(file_sha256, size, digest.hexdigest(), ids, keys, notes, len(clusters))


_Page = tuple[Sequence[Any], list[dict[str, Any]]]


def _paced(pages: Iterator[_Page], pacer: pacing.Pacer, written: Callable[[], None]) -> Iterator[_Page]:
    """``pages``, each one a unit of the pacer: reading it and what the caller does with it (JSON, gzip,
    the digest) is the work that the pause after it is measured against; ``written`` is called after
    each page's unit and pause (progress is told outside the archive's work and transactions)."""
    while True:
        with pacer.unit():
            page = next(pages, None)
            if page is None:
                return
            yield page  # the caller's work on the page runs here, inside the unit
        written()


def _told(progress: Progress | None, tally: _Tally, total: int) -> Callable[[], None]:
    """What ``_paced`` calls after each page: progress of the "write" phase, when it is asked for."""
    if progress is None:
        return lambda: None
    return lambda: progress("write", tally.events, max(total, tally.events))


def _pages(store: Transactions, request: Request, tally: _Tally) -> Iterator[_Page]:
    """Every event that may leave, a page at a time with its records; one read transaction per page."""
    after = 0
    while True:
        with store.read() as conn:
            rows, last = selection.page(conn, request.before_us, request.event_type, after, PAGE_EVENTS)
            records = list(exporter.records_of(conn, rows)) if rows else []
        if last is None:
            return
        after = last
        if not rows:
            continue
        for row, record in zip(rows, records, strict=True):
            tally.add(row, record)
        yield rows, records


def _cluster_record(row: Any) -> dict[str, Any]:
    return {
        "kind": CLUSTER, "id": row.id, "event_type": row.event_type,
        "window_start": exporter.time_text(row.window_start_us),
        "window_end": exporter.time_text(row.window_end_us),
        "failure_count": row.failure_count, "event_count": row.event_count,
        "top_fingerprints": json.loads(row.top_fingerprints),
        "rule": {"window_seconds": row.window_seconds, "min_failures": row.min_failures,
                 "min_events": row.min_events},
    }


def _manifest(archive_id: str, request: Request, tally: _Tally, notes: int, clusters: int,
              digest: chain.Digest) -> dict[str, Any]:
    return {
        "kind": MANIFEST, "format": FORMAT, "archive_id": archive_id,
        "created_at": format_time(from_us(request.now_us)), "actor": request.actor,
        "horizon": format_time(from_us(request.before_us)), "event_type": request.event_type,
        "events": tally.events, "attempts": tally.attempts, "transitions": tally.transitions,
        "annotations": tally.annotations, "cluster_notes": notes, "clusters": clusters,
        "by_type_state": tally.nested(),
        "first_detected_at": _time(tally.first_detected_us),
        "last_activity_at": _time(tally.last_activity_us),
        "digest": digest.hexdigest(), "digest_part": digest.part(), "digest_rows": digest.rows,
    }


def _time(micros: int | None) -> str | None:
    return None if micros is None else exporter.time_text(micros)


def _report(archive_id: str, request: Request, tally: _Tally, *, notes: int, clusters: int, size: int,
            dry_run: bool, file_sha256: str | None = None, removed: int = 0, kept: int = 0, chunks: int = 0,
            digest: str | None = None) -> ArchiveReport:
    return ArchiveReport(
        archive_id=archive_id, dry_run=dry_run, horizon=from_us(request.before_us),
        event_type=request.event_type, file=None if request.target is None else str(request.target),
        file_sha256=file_sha256, events=tally.events, attempts=tally.attempts,
        transitions=tally.transitions, annotations=tally.annotations, cluster_notes=notes,
        clusters=clusters, by_type_state=tally.nested(),
        first_detected_at=None if tally.first_detected_us is None else from_us(tally.first_detected_us),
        last_activity_at=None if tally.last_activity_us is None else from_us(tally.last_activity_us),
        size_bytes=size, removed_events=removed, kept_changed=kept, chunks=chunks, digest=digest,
    )
