"""Incidents (SPEC 13) as pure functions: which clusters are linked, and what an incident holds.

Two clusters of *different* event types are linked when their ``window_start`` times are at most W apart;
an incident is a connected set of linked clusters (links chain), so it always holds two types at least.

``components`` finds the connected sets with one sweep in start order instead of comparing every pair.
Why a sweep suffices: every two clusters whose starts lie within W of each other are linked unless they
share a type. So when a cluster ``c`` (type y) arrives, the clusters starting at most W before it split in
two: those of c's own type (no link to c) and the others, all linked to c. If the others span two types or
more they are already one component (each is linked to every one of another type among them), so c needs
one union with any of them; if they are all of one type x, they may be several components (clusters of x
are not linked to each other), and c joins each. Clusters of one type never overlap (SPEC 7), so the
clusters of a type within one window are few. Links between earlier clusters were made when the later of
the two arrived. So the result is the connected components of the link graph, whatever the order of equal
starts.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from hashlib import blake2b
from operator import itemgetter
from typing import NamedTuple


class Member(NamedTuple):
    """What incidents need of a stored cluster: its row as read (a named tuple: a rebuild makes one per
    cluster, straight from the row). ``tops`` is the stored JSON of its top fingerprints, parsed only for
    clusters that turn out to be in an incident (``fingerprints``)."""

    id: str
    event_type: str
    start_us: int
    end_us: int
    failure_count: int
    event_count: int
    tops: str = "[]"



def components(members: Iterable[Member], window_us: int) -> list[list[Member]]:
    """The incidents among ``members``: connected sets of two clusters or more, each in ``START_ORDER``, the
    list ordered by its first member. ``members`` must be closed under links (see ``incidents``)."""
    groups = streamed(sorted(members, key=START_ORDER), window_us)
    return sorted(groups, key=lambda group: START_ORDER(group[0]))


def streamed(ordered: Iterable[Member], window_us: int) -> Iterator[list[Member]]:
    """``components`` of clusters given in ``START_ORDER`` (a rebuild streams them from the database), each
    set yielded as soon as no later cluster can join it: when its last member leaves the window (W before
    the newest start). Memory: the window and the sets still open, not the history."""
    parent: dict[int, int] = {}
    groups: dict[int, list[tuple[int, Member]]] = {}  # open sets by root, with each member's index
    in_window: dict[int, int] = {}  # open sets by root: how many of their members are in the window

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra == rb:
            return
        if len(groups[ra]) < len(groups[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        groups[ra] += groups.pop(rb)
        in_window[ra] += in_window.pop(rb)

    window: deque[tuple[int, Member]] = deque()  # the clusters starting at most W before the current one
    by_type: dict[str, deque[int]] = {}  # their indexes, per type (only types present)
    last = None
    for k, member in enumerate(ordered):
        if last is not None and START_ORDER(member) < last:
            raise ValueError("clusters must come in (start, type) order")
        last = START_ORDER(member)
        while window and window[0][1].start_us < member.start_us - window_us:
            gone, left = window.popleft()
            kind = left.event_type
            by_type[kind].popleft()
            if not by_type[kind]:
                del by_type[kind]
            r = root(gone)
            in_window[r] -= 1
            if not in_window[r]:  # nothing of this set can link to a later cluster any more
                del in_window[r]
                closed = groups.pop(r)
                for index, _ in closed:
                    del parent[index]
                if len(closed) >= 2:
                    yield _in_order(closed)
        parent[k], groups[k], in_window[k] = k, [(k, member)], 1
        others = [kind for kind in by_type if kind != member.event_type]
        if len(others) >= 2:
            union(k, by_type[others[0]][-1])
        elif others:
            for other in by_type[others[0]]:
                union(k, other)
        window.append((k, member))
        by_type.setdefault(member.event_type, deque()).append(k)
    for closed in groups.values():
        if len(closed) >= 2:
            yield _in_order(closed)


def _in_order(group: list[tuple[int, Member]]) -> list[Member]:
    return [member for _, member in sorted(group)]  # indexes follow the (start, type) order


START_ORDER = itemgetter(2, 1)  # (start, type): earliest first, ties of window_start by event type (SPEC 13)


def incident_id(earliest_cluster_id: str) -> str:
    """``i_`` + 16 hex digits of a BLAKE2b of the id of the incident's earliest cluster (SPEC 13)."""
    return "i_" + blake2b(earliest_cluster_id.encode(), digest_size=8).hexdigest()


class Built(NamedTuple):
    """An incident computed from its clusters, before it is stored (``incident_rows.incident_row``)."""

    id: str
    start_us: int
    end_us: int
    failure_count: int
    event_count: int
    event_types: tuple[tuple[str, int], ...]  # (event type, its distinct events), by name
    shared: tuple[tuple[str, int, int], ...]  # (fingerprint, clusters having it, their failures with it)
    members: tuple[Member, ...]  # all of them; an incremental run's (``incident_local``): those it looked at
    cluster_count: int


def build(group: Sequence[Member], events: Mapping[str, int] | None = None) -> Built:
    """The incident of one connected set (in ``order``).

    ``events``: per event type with two clusters or more in the set, its distinct events among them (an
    event may fail in both); the other types' clusters count their own events (an event has one type).
    Shared fingerprints: those among the top fingerprints of more than one of the clusters (None, a
    failure without a message, is no evidence), most clusters first, then most failures, then by name.
    """
    counted: dict[str, int] = {}
    for member in group:  # a type seen twice gets the count given for it below
        counted[member.event_type] = member.event_count if member.event_type not in counted else -1
    if events:
        counted.update((kind, n) for kind, n in events.items() if counted.get(kind) == -1)
    clusters: dict[str, int] = {}
    failures: dict[str, int] = {}
    for member in group:
        for entry in json.loads(member.tops):  # [fingerprint, count] (old rows add an example: ignored)
            fingerprint = entry[0]
            if fingerprint is not None:
                clusters[fingerprint] = clusters.get(fingerprint, 0) + 1
                failures[fingerprint] = failures.get(fingerprint, 0) + entry[1]
    shared = sorted(((f, n, failures[f]) for f, n in clusters.items() if n > 1),
                    key=lambda s: (-s[1], -s[2], s[0]))
    return Built(incident_id(group[0].id), group[0].start_us, max(m.end_us for m in group),
                 sum(m.failure_count for m in group), sum(counted.values()), tuple(sorted(counted.items())),
                 tuple(shared), tuple(group), len(group))


def repeated_types(group: Sequence[Member]) -> list[str]:
    """The event types with two clusters or more in a set: their distinct events must be counted."""
    if len({m.event_type for m in group}) == len(group):
        return []  # the common case: one cluster per type
    per_type = Counter(m.event_type for m in group)
    return sorted(t for t, n in per_type.items() if n > 1)


member_from_row = Member._make  # from (id, event_type, window_start_us, window_end_us, failure_count,
# event_count, top_fingerprints): the column order of every read of clusters for incidents
