"""Retention (SPEC 15): old, finished history leaves only by an explicit, recorded, verifiable archive.

- ``selection`` finds what may leave: whole finished events whose last activity is before the horizon,
  the cluster notes at the start of a type's note chain, the clusters wholly before the horizon.
- ``archive_file`` writes them as JSON Lines (gzip by suffix) with a manifest line, synced before anything
  is removed.
- ``removal`` removes them in chunks, each chunk with its ``archive`` record in one transaction, inside the
  guard the append-only triggers let through (``storage.triggers``).
- ``horizon`` moves the correlation horizon (failures before it are not clustered any more) and rebuilds
  the clusters, before the first removal, so clusters agree with a rebuild at every moment.
- ``accounting`` reads the archive records back for ``verify``: the digest part, attempt totals and note
  chain starts of what left.
- ``run`` puts these together (``Ledger.archive`` and ``failure-aware archive`` call it).
"""

from __future__ import annotations

from failure_aware.retention.report import ArchiveReport

__all__ = ["ArchiveReport"]
