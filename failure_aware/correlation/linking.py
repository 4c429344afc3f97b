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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b

from .rule import Rule

Fingerprints = tuple[tuple[str | None, int], ...]  # a cluster's top fingerprints with their counts


@dataclass(frozen=True)
class Member:
    """What incidents need of a stored cluster."""

    id: str
    event_type: str
    start_us: int
    end_us: int
    failure_count: int
    event_count: int
    fingerprints: Fingerprints

    @property
    def order(self) -> tuple[int, str]:
        """Earliest first; ties of ``window_start`` broken by event type name (SPEC 13)."""
        return self.start_us, self.event_type


def components(members: Iterable[Member], window_us: int) -> list[list[Member]]:
    """The incidents among ``members``: connected sets of two clusters or more, each in ``order``, the
    list ordered by its first member. ``members`` must be closed under links (see ``incidents``)."""
    ordered = sorted(members, key=lambda m: m.order)
    parent = list(range(len(ordered)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    window: deque[int] = deque()  # indexes of the clusters starting at most W before the current one
    by_type: dict[str, deque[int]] = {}  # the same, per type (only types present)
    for k, member in enumerate(ordered):
        while window and ordered[window[0]].start_us < member.start_us - window_us:
            gone = window.popleft()
            kind = ordered[gone].event_type
            by_type[kind].popleft()
            if not by_type[kind]:
                del by_type[kind]
        others = [kind for kind in by_type if kind != member.event_type]
        if len(others) >= 2:
            union(k, by_type[others[0]][-1])
        elif others:
            for other in by_type[others[0]]:
                union(k, other)
        window.append(k)
        by_type.setdefault(member.event_type, deque()).append(k)
    groups: dict[int, list[Member]] = {}
    for k, member in enumerate(ordered):
        groups.setdefault(root(k), []).append(member)
    return [group for _, group in sorted(groups.items()) if len(group) >= 2]


def incident_id(earliest_cluster_id: str) -> str:
    """``i_`` + 16 hex digits of a BLAKE2b of the id of the incident's earliest cluster (SPEC 13)."""
    return "i_" + blake2b(earliest_cluster_id.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Built:
    """An incident computed from its clusters, before it is stored (``store.incident_row``)."""

    id: str
    start_us: int
    end_us: int
    failure_count: int
    event_count: int
    event_types: tuple[tuple[str, int], ...]  # (event type, its distinct events), by name
    shared: tuple[tuple[str, int, int], ...]  # (fingerprint, clusters having it, their failures with it)
    members: tuple[Member, ...]


def build(group: Sequence[Member], events: Mapping[str, int] | None = None) -> Built:
    """The incident of one connected set (in ``order``).

    ``events``: per event type with two clusters or more in the set, its distinct events among them (an
    event may fail in both); the other types' clusters count their own events (an event has one type).
    Shared fingerprints: those among the top fingerprints of more than one of the clusters (None, a
    failure without a message, is no evidence), most clusters first, then most failures, then by name.
    """
    found = events or {}
    per_type = Counter(m.event_type for m in group)
    events = {t: found[t] for t in per_type if per_type[t] > 1}
    events.update((m.event_type, m.event_count) for m in group if per_type[m.event_type] == 1)
    clusters: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for member in group:
        for fingerprint, count in member.fingerprints:
            if fingerprint is not None:
                clusters[fingerprint] += 1
                failures[fingerprint] += count
    shared = sorted(((f, n, failures[f]) for f, n in clusters.items() if n > 1),
                    key=lambda s: (-s[1], -s[2], s[0]))
    return Built(
        id=incident_id(group[0].id),
        start_us=group[0].start_us,
        end_us=max(m.end_us for m in group),
        failure_count=sum(m.failure_count for m in group),
        event_count=sum(events.values()),
        event_types=tuple(sorted(events.items())),
        shared=tuple(shared),
        members=tuple(group),
    )


def repeated_types(group: Sequence[Member]) -> list[str]:
    """The event types with two clusters or more in a set: their distinct events must be counted."""
    per_type = Counter(m.event_type for m in group)
    return sorted(t for t, n in per_type.items() if n > 1)


def member_from_row(row: Sequence[object]) -> Member:
    """A ``Member`` from ``(id, event_type, window_start_us, window_end_us, failure_count, event_count,
    top_fingerprints JSON)``."""
    cid, kind, start, end, failure_count, event_count, tops = row
    prints = tuple((entry[0], int(entry[1])) for entry in json.loads(str(tops)))
    return Member(str(cid), str(kind), int(start), int(end), int(failure_count),  # type: ignore[call-overload]
                  int(event_count), prints)  # type: ignore[call-overload]


def describe(rule: Rule) -> str:
    """The linking rule in words."""
    return (f"clusters of different event types starting at most {rule.window_seconds}s apart, "
            "linked in chains")
