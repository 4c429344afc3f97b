"""What an archive did (or, with ``dry_run``, would do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from failure_aware.domain.timeutil import format_time


@dataclass(frozen=True)
class ArchiveReport:
    """The result of ``Ledger.archive``.

    ``events`` ... ``clusters`` count what the file holds (on a dry run: what would leave);
    ``removed_events`` what left the database; ``kept_changed`` events written to the file that changed
    before their chunk was removed (a revive, a note): they stay in the database, and a rerun takes them
    when they are finished again. ``size_bytes`` is the file's size (dry run: the JSON Lines before any
    gzip). ``digest`` is the digest of the removed events' chains (the manifest's ``digest``).
    """

    archive_id: str
    dry_run: bool
    horizon: datetime
    event_type: str | None
    file: str | None
    file_sha256: str | None
    events: int
    attempts: int
    transitions: int
    annotations: int
    cluster_notes: int
    clusters: int
    by_type_state: dict[str, dict[str, int]] = field(default_factory=dict)
    first_detected_at: datetime | None = None
    last_activity_at: datetime | None = None
    size_bytes: int = 0
    removed_events: int = 0
    kept_changed: int = 0
    chunks: int = 0
    digest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as RFC 3339)."""
        return {
            "archive_id": self.archive_id, "dry_run": self.dry_run, "horizon": format_time(self.horizon),
            "event_type": self.event_type, "file": self.file, "file_sha256": self.file_sha256,
            "events": self.events, "attempts": self.attempts, "transitions": self.transitions,
            "annotations": self.annotations, "cluster_notes": self.cluster_notes, "clusters": self.clusters,
            "by_type_state": self.by_type_state,
            "first_detected_at": format_time(self.first_detected_at),
            "last_activity_at": format_time(self.last_activity_at),
            "size_bytes": self.size_bytes, "removed_events": self.removed_events,
            "kept_changed": self.kept_changed, "chunks": self.chunks, "digest": self.digest,
        }
