"""Incremental incidents that cost what a run touches, not the incidents it touches (issue 15).

**Why a local look suffices.** Say a link *crosses* a time t when one of its clusters starts at or before
t and the other at or after it. Every two links crossing the same t belong to one incident. (Their four
ends lie within W of t. The two later ends are within W of each other, and so are the two earlier ends:
if either pair differs in type, it is itself a link. Otherwise the later ends share a type a and the
earlier ones a type b != a; with (x1, y1), (x2, y2) the two links, earlier ends first and x1 <= x2,
y1 - x2 <= y1 - x1 <= W, so x2 and y1 are linked.) Hence incidents occupy disjoint stretches of starts,
and inside an incident's stretch, every time is crossed by links of that incident.

A run changes clusters at some starts (added, removed, changed: ``IncidentTally``). Let R be a set of
stretches holding ``[s - W, s + W]`` around each such start s, and E the same stretches widened by W
more. A link with an end outside R involves no cluster that changed (the changed cluster's start is
more than W away), so it is still there; and the links crossing a time outside R are those of before.
So the part of an old incident between two stretches of R (a *piece*) lies, whole, inside one incident of
the new clusters. What joins or splits pieces is only what happens inside R, and every link there is
between clusters starting in E. So: read the clusters starting in E and their old incidents, link them
(``linking.components``), and join each one outside R that was in an old incident to the piece it lies in
(a *token*: old incident, stretch between). The connected sets of clusters and tokens are the new
incidents that differ from the old ones; a piece reaching R always has a cluster in E (its link crossing
R's edge), so none is missed.

**What is written.** Each new set with tokens is computed from one old incident's row, its *holder*
(``_holders``: the largest old incident first, each holding one set at most). The pieces of other old
incidents in that set (a merge), and the holder's own pieces in other sets (a split), are read whole
(``_expand``) and count as clusters read. The holder's clusters not read are unchanged, so cluster and
failure counts and fingerprint tallies are its row minus its clusters read (as they were) plus the set's
clusters read; a fingerprint the row does not list (held by one cluster at most) is looked up. Start,
end and id follow from the row, or, when the extreme cluster was read and nothing read replaces it, from
an aggregate over the clusters not read. Distinct events are recounted only for the types whose clusters
read changed: the old count, minus the events only the lost clusters had, plus those only the gained ones
have ("only": no failure inside the type's unchanged clusters in the set, looked up near each event's
failures). A set without tokens is computed from its clusters, all read. A case left out (a chain of
renamed ids, an earliest cluster neither read nor replaced) returns None before anything is written, and
the caller recomputes the touched incidents whole.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from failure_aware.correlation import failures
from failure_aware.correlation import incident_rows as rows
from failure_aware.correlation.linking import START_ORDER, Built, Member, components, incident_id
from failure_aware.correlation.rule import Rule
from failure_aware.correlation.sql import Sql

Token = tuple[str, int]  # (old incident, index of the stretch between two of R's stretches)
_TYPES, _SHARED = rows.COLUMNS.index("event_types") - 1, rows.COLUMNS.index("shared_fingerprints") - 1


class _Whole(Exception):
    """A case the old rows cannot answer: the touched incidents are recomputed whole."""


Counted = Callable[[Sql, list[list[Member]]], list[Built]]  # ``incidents.counted``


@dataclass(frozen=True)
class Found:
    """What a local update found: ``computed`` the incidents that may differ (a grown one's ``members``
    are its clusters in E only), ``old`` the stored rows of the incidents touched (id -> signature),
    ``was`` the old membership of the clusters looked at, ``looked`` those clusters (starting in E, read
    whole from pieces, or removed), ``renamed`` the old incidents whose clusters not looked at move to a
    new id (old -> new), ``read_whole`` how many clusters were read from pieces (merges and splits)."""

    computed: list[Built]
    old: dict[str, rows.Signature]
    was: dict[str, str]
    looked: set[str]
    renamed: dict[str, str]
    read_whole: int


def update(
    sql: Sql, rule: Rule, new_starts: Iterable[int], gone: Mapping[str, Member], after_id: int,
    counted: Counted,
) -> Found | None:
    """The incidents around a run's changes (see the module), or None: recompute the touched incidents
    whole (nothing was written)."""
    try:
        return _Local(sql, rule, gone, after_id, counted).run(new_starts)
    except _Whole:
        return None


@dataclass
class _Stretches:
    """R and E: ``inner[j]`` and ``outer[j] = inner[j]`` widened by W, disjoint, in order."""

    inner: list[tuple[int, int]]
    outer: list[tuple[int, int]]

    @classmethod
    def around(cls, starts: Iterable[int], window_us: int) -> _Stretches:
        runs: list[list[int]] = []
        for start in sorted(set(starts)):
            if runs and start - runs[-1][1] <= 4 * window_us:  # widened by 2W each side: they would meet
                runs[-1][1] = start
            else:
                runs.append([start, start])
        return cls([(a - window_us, b + window_us) for a, b in runs],
                   [(a - 2 * window_us, b + 2 * window_us) for a, b in runs])

    def locate(self, start_us: int) -> tuple[int, int] | None:
        """For a start in E: its stretch j and where: -1 before R's stretch, 0 in it, 1 after it."""
        j = bisect_right(self.outer, (start_us, 2**63)) - 1
        if j < 0 or start_us > self.outer[j][1]:
            return None
        lo, hi = self.inner[j]
        return j, -1 if start_us < lo else (1 if start_us > hi else 0)

    def gap(self, start_us: int) -> int:
        """The stretch between two of E's (0: before the first) a start outside E lies in."""
        return bisect_right(self.outer, (start_us, 2**63))

    def token(self, start_us: int, incident: str) -> Token | None:
        """The piece of ``incident`` a cluster starting here (in E, outside R) lies in."""
        where = self.locate(start_us)
        if where is None or where[1] == 0:
            return None
        return incident, where[0] + (where[1] > 0)


class _Links:
    """Union-find over cluster ids and tokens."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def root(self, x: Hashable) -> Hashable:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra


class _Local:
    def __init__(
        self, sql: Sql, rule: Rule, gone: Mapping[str, Member], after_id: int, counted: Counted
    ) -> None:
        self.sql, self.rule, self.gone, self.after_id, self.counted = sql, rule, gone, after_id, counted

    def run(self, new_starts: Iterable[int]) -> Found:
        window = self.rule.window_us
        self.span = span = _Stretches.around([*new_starts, *(m.start_us for m in self.gone.values())], window)
        local = {m.id: m for m in rows.clusters_starting(self.sql, span.outer)}
        was = rows.membership(self.sql, [*local, *self.gone])
        old = rows.signatures(self.sql, set(was.values()))
        links = _Links()
        for group in components(local.values(), window):
            for member in group[1:]:
                links.union(group[0].id, member.id)
        for cid, member in local.items():
            if cid in was and cid not in self.gone:
                token = span.token(member.start_us, was[cid])
                if token is not None:
                    links.union(cid, token)
        nodes: dict[Hashable, list[Member]] = {}
        pieces: dict[str, dict[Hashable, list[int]]] = {}  # old incident -> set -> its pieces there
        for key in list(links.parent):
            root = links.root(key)
            if isinstance(key, str):
                nodes.setdefault(root, []).append(local[key])
            elif isinstance(key, tuple):
                pieces.setdefault(key[0], {}).setdefault(root, []).append(key[1])
        holders = self._holders(pieces, old)
        read = dict(local)
        self._expand(pieces, holders, nodes, was, read)
        fresh = [sorted(ms, key=START_ORDER) for root, ms in nodes.items()
                 if root not in holders and len(ms) > 1]
        computed = self.counted(self.sql, fresh)
        olds: dict[str, list[Member]] = {}  # per old incident: its clusters read, as they were
        for cid, iid in was.items():
            olds.setdefault(iid, []).append(self.gone.get(cid) or read[cid])
        grown = [(iid, nodes[root], pieces[iid][root]) for root, iid in holders.items()]
        computed += self._grown(grown, old, olds)
        renamed = {iid: built.id for (iid, _, _), built in zip(grown, computed[len(fresh):], strict=True)
                   if built.id != iid}
        if set(renamed.values()) & set(renamed):
            raise _Whole  # a chain of renames: not worth ordering them
        return Found(computed, old, was, {*read, *self.gone}, renamed, len(read) - len(local))

    @staticmethod
    def _holders(
        pieces: Mapping[str, Mapping[Hashable, list[int]]], old: Mapping[str, rows.Signature]
    ) -> dict[Hashable, str]:
        """Which old incident each new set is computed from (at most one each way): the largest first, so
        the pieces read whole (``_expand``) are those of the smaller incidents merging into a larger one,
        and those of the smaller parts of a split (the largest part is kept, by a guess)."""
        holders: dict[Hashable, str] = {}
        for iid in sorted(pieces, key=lambda i: (-int(old[i][2]), i)):
            free = [root for root in pieces[iid] if root not in holders]
            if free:
                holders[max(free, key=lambda r: len(pieces[iid][r]))] = iid
        return holders

    def _expand(
        self, pieces: Mapping[str, Mapping[Hashable, list[int]]], holders: Mapping[Hashable, str],
        nodes: dict[Hashable, list[Member]], was: dict[str, str], read: dict[str, Member],
    ) -> None:
        """Read whole the pieces of old incidents in sets not computed from them, into those sets."""
        wanted = {(iid, gap): root for iid, sets in pieces.items() for root, gaps in sets.items()
                  if holders.get(root) != iid for gap in gaps}
        if not wanted:
            return
        owner = rows.members_of(self.sql, {iid for iid, _ in wanted})
        for member in rows.clusters_by_ids(self.sql, [c for c in owner if c not in read]):
            root = wanted.get((owner[member.id], self.span.gap(member.start_us)))
            if root is not None:
                nodes[root].append(member)
                was[member.id] = owner[member.id]
                read[member.id] = member

    def _grown(
        self, grown: Sequence[tuple[str, list[Member], list[int]]], old: Mapping[str, rows.Signature],
        olds: Mapping[str, list[Member]],
    ) -> list[Built]:
        """The sets computed from an old incident's row (see the module)."""
        heads = [self._head(iid, old[iid], olds.get(iid, []), mine, gaps) for iid, mine, gaps in grown]
        counts = self._events(grown, old, olds)
        built = []
        for (iid, mine, _), (start_us, end_us, first), events in zip(grown, heads, counts, strict=True):
            signature, before = old[iid], olds.get(iid, [])
            shared = self._shared(iid, signature, before, mine)
            built.append(Built(
                incident_id(first.id) if first is not None else iid, start_us, end_us,
                int(signature[3]) - sum(m.failure_count for m in before) + sum(m.failure_count for m in mine),
                sum(events.values()), tuple(sorted(events.items())), shared,
                tuple(sorted(mine, key=START_ORDER)),  # the clusters read; the others keep their rows
                int(signature[2]) - len(before) + len(mine),
            ))
        return built

    def _head(
        self, iid: str, signature: rows.Signature, before: list[Member], mine: list[Member], gaps: list[int]
    ) -> tuple[int, int, Member | None]:
        """Start, end, and the new earliest cluster (None: the old one, not read, still is). The clusters
        not read start in the ``gaps`` between E's stretches (no start there was read: no ties); when the
        row cannot tell their extremes (the extreme cluster was read and nothing read replaces it), they
        are asked for."""
        start_us, end_us = int(signature[0]), int(signature[1])
        first = min(mine, key=START_ORDER, default=None)
        unknown = (2**63, -(2**63))
        rest = None
        if start_us < min((m.start_us for m in before), default=2**63):  # the earliest was not read
            if first is None or first.start_us > start_us:
                first = None
            else:
                start_us = first.start_us
        else:  # it was read
            rest = self._rest(iid, gaps) or unknown
            if first is None or first.start_us > rest[0]:
                raise _Whole  # the earliest is not read; its id would have to be asked for too
            start_us = first.start_us
        old_end = max((m.end_us for m in before), default=None)
        new_end = max((m.end_us for m in mine), default=end_us)
        if old_end is None or end_us > old_end:  # held by a cluster not read
            end_us = max(end_us, new_end)
        elif new_end >= end_us:
            end_us = new_end
        else:
            end_us = max((rest or self._rest(iid, gaps) or unknown)[1], new_end)
        return start_us, end_us, first

    def _rest(self, iid: str, gaps: list[int]) -> tuple[int, int] | None:
        """The earliest start and latest end of an old incident's clusters not read (in ``gaps``; None:
        every one was read, its pieces ended in E)."""
        return rows.extremes(self.sql, iid, self._gap_ranges(gaps))

    def _gap_ranges(self, gaps: list[int]) -> list[tuple[int, int]]:
        """The starts between E's stretches, as ``[lo, hi]`` ranges, for gap numbers."""
        outer = self.span.outer
        return [(outer[g - 1][1] + 1 if g else -(2**63), outer[g][0] - 1 if g < len(outer) else 2**63 - 1)
                for g in gaps]

    def _shared(
        self, iid: str, signature: rows.Signature, before: list[Member], mine: list[Member]
    ) -> tuple[tuple[str, int, int], ...]:
        """The shared fingerprints: the old tallies minus the old clusters in E plus the new."""
        stored = {fp: (n, f) for fp, n, f in json.loads(signature[_SHARED])}
        old_holders, old_failures = _tops(before)
        new_holders, new_failures = _tops(mine)
        # A fingerprint the row does not list was held by one cluster at most: if none read had it, one
        # not read may have it: those are looked up (by a text search of their stored tops).
        unknown = [fp for fp in new_holders if fp not in stored and not old_holders[fp]]
        read = {m.id for m in before}
        rest_holders, rest_failures = _tops(m for m in rows.clusters_holding(self.sql, iid, unknown)
                                            if m.id not in read)
        found = []
        for fp in set(stored) | set(new_holders):
            if fp in stored:
                holders, count = stored[fp][0] - old_holders[fp], stored[fp][1] - old_failures[fp]
            else:  # at most one cluster had it: read (and gone from the set, if not in ``mine``) or not
                holders, count = rest_holders[fp], rest_failures[fp]
            holders, count = holders + new_holders[fp], count + new_failures[fp]
            if holders > 1:
                found.append((fp, holders, count))
        return tuple(sorted(found, key=lambda s: (-s[1], -s[2], s[0])))

    def _events(
        self, grown: Sequence[tuple[str, list[Member], list[int]]], old: Mapping[str, rows.Signature],
        olds: Mapping[str, list[Member]],
    ) -> list[dict[str, int]]:
        """Per set: its distinct events per type (see the module)."""
        result: list[dict[str, int]] = []
        work: list[tuple[int, str, list[Member], list[Member], list[Member]]] = []
        for k, (iid, mine, _) in enumerate(grown):
            counts = {t: int(n) for t, n in json.loads(old[iid][_TYPES])}
            before_by, mine_by = _by_type(olds.get(iid, [])), _by_type(mine)
            for kind in before_by.keys() | mine_by.keys():
                was, now = before_by.get(kind, {}), mine_by.get(kind, {})
                if was == now:
                    continue
                kept = [m for cid, m in now.items() if was.get(cid) == m]
                work.append((k, kind, kept, [m for cid, m in was.items() if now.get(cid) != m],
                             [m for cid, m in now.items() if was.get(cid) != m]))
            result.append(counts)
        spans = [(kind, m.start_us, m.end_us) for _, kind, _, lost, _ in work for m in lost]
        lost_events = iter(failures.event_sets(self.sql, spans, self.after_id))
        spans = [(kind, m.start_us, m.end_us) for _, kind, _, _, added in work for m in added]
        added_events = iter(failures.event_sets(self.sql, spans))
        sets: list[tuple[set[int], set[int]]] = [
            (set().union(*(next(lost_events) for _ in lost)),
             set().union(*(next(added_events) for _ in added)))
            for _, _, _, lost, added in work
        ]
        times = failures.failure_times(self.sql, {e for a, b in sets for e in a | b})
        pieces = self._pieces([(grown[k][0], kind, [at for e in a | b for at in times.get(e, ())])
                               for (k, kind, _, _, _), (a, b) in zip(work, sets, strict=True)], olds)
        for (k, kind, kept, _, added), (lost_ids, added_ids), unread in zip(work, sets, pieces, strict=True):
            held = sorted([*unread, *((m.start_us, m.end_us) for m in kept)])
            starts = [s for s, _ in held]

            def outside(event: int, held: list[tuple[int, int]] = held, starts: list[int] = starts) -> bool:
                return not any(_inside(held, starts, at) for at in times.get(event, ()))

            counts = result[k]
            lost_n, added_n = sum(map(outside, lost_ids)), sum(map(outside, added_ids))
            counts[kind] = counts.get(kind, 0) - lost_n + added_n
            # ``held`` has only the unchanged clusters near these events: whether the type keeps one at
            # all (it lost every cluster read and gained none) is asked for.
            if not (held or added or self._keeps(grown[k][0], kind, grown[k][2])):
                del counts[kind]
        return result

    def _keeps(self, iid: str, kind: str, gaps: list[int]) -> bool:
        """Whether an old incident has a cluster of a type that was not read (in ``gaps``)."""
        return rows.holds_type(self.sql, iid, kind, self._gap_ranges(gaps))

    def _pieces(
        self, asked: Sequence[tuple[str, str, list[int]]], olds: Mapping[str, list[Member]]
    ) -> list[list[tuple[int, int]]]:
        """For each (old incident, type, failure times): the spans of that type's clusters in the incident
        that were not read (unchanged) and may hold one of the times. The incident's clusters of the type
        are not all read: it may hold hundreds, and the events asked about fail near the changes."""
        wanted = [(k, (kind, min(times), max(times))) for k, (_, kind, times) in enumerate(asked) if times]
        covering = rows.clusters_covering(self.sql, [r for _, r in wanted])
        owner = rows.membership(self.sql, {cid for found in covering for cid, _, _ in found})
        read = {iid: {m.id for m in members} for iid, members in olds.items()}
        result: list[list[tuple[int, int]]] = [[] for _ in asked]
        for (k, _), found in zip(wanted, covering, strict=True):
            iid = asked[k][0]
            result[k] = [(start_us, end_us) for cid, start_us, end_us in found
                         if owner.get(cid) == iid and cid not in read.get(iid, ())]
        return result


def _inside(spans: list[tuple[int, int]], starts: list[int], at_us: int) -> bool:
    k = bisect_right(starts, at_us) - 1
    return k >= 0 and at_us <= spans[k][1]


def _by_type(members: Iterable[Member]) -> dict[str, dict[str, Member]]:
    found: dict[str, dict[str, Member]] = {}
    for member in members:
        found.setdefault(member.event_type, {})[member.id] = member
    return found


def _tops(members: Iterable[Member]) -> tuple[Counter[str], Counter[str]]:
    """Per fingerprint: how many of the clusters list it among their top fingerprints, with how many
    failures (a failure without a message, None, is no evidence)."""
    holders: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    for member in members:
        for fingerprint, count in _parsed(member.tops):
            if fingerprint is not None:
                holders[fingerprint] += 1
                counted[fingerprint] += count
    return holders, counted


@lru_cache(maxsize=4096)
def _parsed(tops: str) -> tuple[tuple[str | None, int], ...]:
    """A stored ``top_fingerprints`` as pairs (parsed once: a run tallies the clusters it read both as they
    were and as they are, mostly the same rows)."""
    return tuple((entry[0], entry[1]) for entry in json.loads(tops))
