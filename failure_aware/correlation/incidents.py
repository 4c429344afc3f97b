"""Writing incidents (SPEC 13): computed from the stored clusters by the same ``correlate`` run.

Rebuild: link every stored cluster (``linking.components``) and make the incident tables hold exactly the
result (rows that come out the same are left in place).

Incremental: the cluster step reports which clusters it added (their starts) and which it removed or
changed (their old rows). ``incident_local`` updates the incidents from their rows and the clusters near
those changes, reading an incident whole only when it merges or splits (the smaller side). When a row
cannot tell what it needs, the touched incidents are recomputed whole (``_update_whole``). Only incidents
near the changes can change:

- a removed or changed cluster changes the incident it was in (a changed one keeps its id, type and start,
  so its links, but not the incident's counts);
- an added cluster links to the clusters of other types starting within W of it: their incidents (or
  they alone, if they were in none) may merge with it.

The *region* is: every member of those incidents, and every cluster starting within W of an added one.
It is closed under links: a member of an old incident is linked only to members of the same incident (the
links among unchanged clusters did not change) or to an added cluster; a cluster that was in no incident
is linked only to added clusters; an added cluster's links all start within W of it. So the connected sets
computed on the region are exactly the incidents a rebuild would find there, and the incidents outside it
are unchanged. The region's old incidents are replaced by the new ones, with the same comparison as a
rebuild. So the whole recomputation follows the incidents the changed clusters touch, not the history; an
incident that chains a great many clusters is read whole (the local update avoids that).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from failure_aware.correlation import failures, incident_local
from failure_aware.correlation import incident_rows as rows
from failure_aware.correlation.linking import Built, Member, build, components, repeated_types, streamed
from failure_aware.correlation.rule import Rule
from failure_aware.correlation.sql import Sql

REBUILD_BATCH = 2000  # incidents built and written together by a rebuild


@dataclass
class IncidentTally:
    """What a ``correlate`` run did to incidents, and the cluster changes it must follow."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    new_starts: list[int] = field(default_factory=list)  # window_start of each cluster added
    gone: dict[str, Member] = field(default_factory=dict)  # clusters removed or changed, as they were
    after_id: int = 0  # the failures the stored incidents were computed from: ids up to this
    whole: bool = False  # the run fell back to recomputing the touched incidents whole


def rebuild(sql: Sql, rule: Rule, tally: IncidentTally) -> None:
    """Recompute every incident from every stored cluster (nothing stored is reused).

    The clusters are streamed in start order and each incident is built and written as soon as no later
    cluster can join it (``linking.streamed``), in batches: memory holds the window, the open incidents
    and the stored incidents' ids, not every cluster."""
    old = rows.signatures(sql, None)
    old_members = rows.all_membership(sql)
    found: set[str] = set()
    kept: set[str] = set()  # clusters in an incident
    batch: list[list[Member]] = []
    for group in streamed(rows.clusters_in_order(sql), rule.window_us):
        batch.append(group)
        if len(batch) >= REBUILD_BATCH:
            _flush(sql, rule, batch, old, old_members, found, kept, tally)
    _flush(sql, rule, batch, old, old_members, found, kept, tally)
    _drop(sql, [iid for iid in old if iid not in found], [cid for cid in old_members if cid not in kept],
          tally)


def _flush(
    sql: Sql, rule: Rule, batch: list[list[Member]], old: Mapping[str, rows.Signature],
    old_members: Mapping[str, str], found: set[str], kept: set[str], tally: IncidentTally,
) -> None:
    built = counted(sql, batch)
    kept.update(_write(sql, rule, built, old, old_members, tally))
    found.update(b.id for b in built)
    batch.clear()


def update(sql: Sql, rule: Rule, tally: IncidentTally) -> None:
    """Bring the incidents up to date with the clusters this run added, removed or changed: locally
    (``incident_local``) when the touched incidents' rows tell enough, else recomputed whole."""
    if not tally.new_starts and not tally.gone:
        return
    found = incident_local.update(sql, rule, tally.new_starts, tally.gone, tally.after_id, counted)
    if found is not None:
        _settle_local(sql, rule, found, tally)
        return
    tally.whole = True
    _update_whole(sql, rule, tally)


def _compared(computed: Sequence[Built], old: Mapping[str, rows.Signature], rule: Rule, tally: IncidentTally
              ) -> tuple[list[str], list[rows.Row_]]:
    """The computed incidents compared with their stored rows as a rebuild would: the ids whose rows are
    stale (to replace) and the rows to insert (new or changed); ``tally`` counts each kind."""
    stale: list[str] = []
    inserts: list[rows.Row_] = []
    for built in computed:
        row = rows.incident_row(built, rule.window_seconds)
        before = old.get(built.id)
        if before is None:
            tally.added += 1
            inserts.append(row)
        elif before != row[1:]:
            tally.changed += 1
            stale.append(built.id)
            inserts.append(row)
        else:
            tally.unchanged += 1
    return stale, inserts


def _settle_local(sql: Sql, rule: Rule, found: incident_local.Found, tally: IncidentTally) -> None:
    """Write what a local update found: incident rows compared with the old ones as a rebuild would, the
    renamed incidents' memberships moved in one statement each, then the clusters looked at."""
    stale, inserts = _compared(found.computed, found.old, rule, tally)
    ids = {b.id for b in found.computed}
    gone = [iid for iid in found.old if iid not in ids]
    tally.removed += len(gone)
    rows.delete(sql, "incident", "id", [*stale, *gone])
    rows.insert(sql, "incident", rows.COLUMNS, inserts, rows.INCIDENT_CASTS)
    rows.rename(sql, found.renamed)
    current = {cid: found.renamed.get(iid, iid) for cid, iid in found.was.items()}
    wanted = {m.id: b.id for b in found.computed for m in b.members}
    moved = [cid for cid in found.looked if current.get(cid) != wanted.get(cid)]
    rows.delete(sql, "incident_cluster", "cluster_id", [cid for cid in moved if cid in current])
    rows.insert(sql, "incident_cluster", ("cluster_id", "incident_id"),
                [(cid, wanted[cid]) for cid in moved if cid in wanted], rows.MEMBER_CASTS)


def _update_whole(sql: Sql, rule: Rule, tally: IncidentTally) -> None:
    """Recompute every incident near the changed clusters from all its clusters (see the module)."""
    near = rows.clusters_starting(sql, _merged(tally.new_starts, rule.window_us))
    looked = rows.membership(sql, [*tally.gone, *(m.id for m in near)])
    old_members = rows.members_of(sql, set(looked.values()))
    old_members.update(looked)  # removed clusters keep their old rows until settled
    region = {m.id: m for m in near}
    missing = [cid for cid in old_members if cid not in region]
    region.update((m.id, m) for m in rows.clusters_by_ids(sql, missing))
    old = rows.signatures(sql, set(old_members.values()))
    known = _known_events(region, old, old_members, set(tally.gone))
    _settle(sql, rule, compute(sql, region.values(), rule, known), old, old_members, tally)


def _merged(starts: Iterable[int], window_us: int) -> list[tuple[int, int]]:
    """``[start - W, start + W]`` around each start, overlapping ranges merged (so no cluster is read
    twice), in order."""
    merged: list[tuple[int, int]] = []
    for start in sorted(starts):
        lo, hi = start - window_us, start + window_us
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


Known = dict[frozenset[str], int]  # the clusters of one type in one incident -> their distinct events


def _known_events(
    region: Mapping[str, Member], old: Mapping[str, rows.Signature], old_members: Mapping[str, str],
    gone: set[str],
) -> Known:
    """The distinct events of each type of each old incident that can be reused: that type's clusters in
    it are all still stored and unchanged (the events of the same clusters are the same events). Counting
    them again means reading their failures: in an incident of thousands of clusters, most of the work."""
    by_type: dict[tuple[str, str], set[str]] = {}
    spoilt: set[tuple[str, str]] = set()
    broken: set[str] = set()  # incidents that lost a cluster (its type is no longer known)
    for cid, iid in old_members.items():
        member = region.get(cid)
        if member is None:
            broken.add(iid)
            continue
        key = (iid, member.event_type)
        by_type.setdefault(key, set()).add(cid)
        if cid in gone:
            spoilt.add(key)
    known: Known = {}
    for iid, signature in old.items():
        if iid in broken:
            continue
        for kind, events in json.loads(signature[rows.COLUMNS.index("event_types") - 1]):
            clusters = by_type.get((iid, kind))
            if clusters is not None and (iid, kind) not in spoilt:
                known[frozenset(clusters)] = int(events)
    return known


def compute(sql: Sql, region: Iterable[Member], rule: Rule, known: Known | None = None) -> list[Built]:
    """The incidents of a set of clusters closed under links, with their distinct events counted (read
    from the failures, except for the sets of clusters in ``known``)."""
    return counted(sql, components(region, rule.window_us), known)


def counted(sql: Sql, groups: list[list[Member]], known: Known | None = None) -> list[Built]:
    """The incidents of connected sets, with the distinct events of each type that has several clusters
    in a set. Read from the failures (one batch of statements for all), except what ``known`` tells: a
    set of clusters counted before is reused, and when part of a type's clusters is such a set K, only
    the other clusters' events are read, and those that also failed inside K (a few index lookups of
    their attempts) are not counted twice. So an incremental run reads the failures of the clusters that
    changed, not those of a whole incident they joined."""
    part_of = {cid: part for part in known or {} for cid in part}
    spans: list[tuple[str, int, int]] = []
    owners: list[tuple[int, str]] = []  # per span: its group and type
    per_type: list[dict[str, int]] = [{} for _ in groups]
    bases: dict[tuple[int, str], tuple[int, list[Member]]] = {}  # a known part: its count, its clusters
    for g, group in enumerate(groups):
        repeated = set(repeated_types(group))
        of_type: dict[str, list[Member]] = {}
        for member in group:
            if member.event_type in repeated:
                of_type.setdefault(member.event_type, []).append(member)
        for kind, mine in of_type.items():
            ids = frozenset(m.id for m in mine)
            parts = {part_of[c] for c in ids if c in part_of}
            base = max((p for p in parts if p <= ids), key=len, default=frozenset())
            if base:
                bases[g, kind] = (known[base] if known else 0, [m for m in mine if m.id in base])
            for member in mine:
                if member.id not in base:
                    spans.append((kind, member.start_us, member.end_us))
                    owners.append((g, kind))
            if base == ids:
                per_type[g][kind] = bases[g, kind][0]
    events: dict[tuple[int, str], set[int]] = {}
    for owner, found in zip(owners, failures.event_sets(sql, spans), strict=True):
        events.setdefault(owner, set()).update(found)
    times = failures.failure_times(sql, {e for key, ids in events.items() if key in bases for e in ids})
    for (g, kind), read in events.items():
        base_count, base_members = bases.get((g, kind), (0, []))
        base_spans = sorted((m.start_us, m.end_us) for m in base_members)
        starts = [start for start, _ in base_spans]
        again = {e for e in read if any(_inside(base_spans, starts, at) for at in times.get(e, ()))}
        per_type[g][kind] = base_count + len(read) - len(again)
    return [build(group, events) for group, events in zip(groups, per_type, strict=True)]


def _inside(spans: list[tuple[int, int]], starts: list[int], at_us: int) -> bool:
    """Whether a time lies in one of a type's clusters (``spans`` sorted; clusters of one type never
    overlap, so only the last one starting at or before it can hold it): a bisection, not a pass over every
    cluster of the type (thousands in a long chained incident, for each event read)."""
    k = bisect_right(starts, at_us) - 1
    return k >= 0 and at_us <= spans[k][1]


def _settle(
    sql: Sql, rule: Rule, computed: list[Built], old: Mapping[str, rows.Signature],
    old_members: Mapping[str, str], tally: IncidentTally,
) -> None:
    """Make the stored incidents of a region (``old``, with the membership rows ``old_members`` of its
    clusters) those ``computed`` from its clusters; unchanged rows stay in place."""
    wanted = _write(sql, rule, computed, old, old_members, tally)
    _drop(sql, [iid for iid in old if iid not in {b.id for b in computed}],
          [cid for cid in old_members if cid not in wanted], tally)


def _write(
    sql: Sql, rule: Rule, computed: list[Built], old: Mapping[str, rows.Signature],
    old_members: Mapping[str, str], tally: IncidentTally,
) -> dict[str, str]:
    """Insert the computed incidents that are new or changed and their memberships (replacing the rows
    they change); returns the memberships they want (cluster id -> incident id)."""
    stale, inserts = _compared(computed, old, rule, tally)
    wanted = {m.id: b.id for b in computed for m in b.members}
    moved = [cid for cid, iid in wanted.items() if old_members.get(cid) != iid]
    rows.delete(sql, "incident_cluster", "cluster_id", [cid for cid in moved if cid in old_members])
    rows.delete(sql, "incident", "id", stale)
    rows.insert(sql, "incident", rows.COLUMNS, inserts, rows.INCIDENT_CASTS)
    rows.insert(sql, "incident_cluster", ("cluster_id", "incident_id"), [(cid, wanted[cid]) for cid in moved],
                rows.MEMBER_CASTS)
    return wanted


def _drop(sql: Sql, incidents: list[str], memberships: list[str], tally: IncidentTally) -> None:
    """Delete the incidents no longer found, and the memberships of clusters in none any more."""
    tally.removed += len(incidents)
    rows.delete(sql, "incident_cluster", "cluster_id", memberships)
    rows.delete(sql, "incident", "id", incidents)
