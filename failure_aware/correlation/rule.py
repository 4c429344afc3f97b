"""The correlation rule of SPEC section 7, as pure functions over one event type's sorted failures.

For one event type, sort the failures by time ``t_1 <= ... <= t_m``. Window ``[i, i+N-1]`` *qualifies* when
``t_(i+N-1) - t_i <= W``. Qualifying windows are taken in order of ``i``; one joins the current cluster when
its first time is at or before the last time of the previous qualifying window, else it starts a new one. A
cluster covers its windows' failures; clusters with fewer than ``E`` distinct events are dropped.

Why the result depends only on the set of ``(time, event)`` facts, never on the order of equal times: a
cluster never splits a group of equal times. If ``t_(b+1) = t_b`` for a cluster's last index ``b`` (last
window ``[b-N+1, b]``), the window one further has ``t_(b+1) - t_(b-N+2) <= t_b - t_(b-N+1) <= W``, so it
qualifies and joins; symmetrically at the first index. So a cluster is exactly *all* failures with times
in ``[window_start, window_end]``, whichever order ties arrive in, and its counts follow.

``ClusterScanner`` runs the rule over chunks of a sorted stream in O(m) time and O(N + chunk + distinct
events of the open cluster) memory; the per-failure work is a C-level pass over each chunk (``map`` over
``operator.sub``), and Python-level work happens only for qualifying windows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from itertools import compress, count, islice, repeat
from operator import ge, gt, lt, sub

from failure_aware.domain.durations import parse_duration
from failure_aware.domain.errors import ValidationError

DEFAULT_WINDOW_SECONDS = 600
DEFAULT_MIN_FAILURES = 3
DEFAULT_MIN_EVENTS = 2
MAX_WINDOW_SECONDS = 10 * 366 * 86400  # ten years: anything longer is a typo
US_PER_SECOND = 1_000_000


def active_since_us(now_us: int, window_us: int) -> int:
    """The earliest ``window_end`` of a cluster still active at ``now_us`` (SPEC 7: ``window_end >= now -
    W``); an incident is active while its latest cluster end is. Every reader of "active" asks this."""
    return now_us - window_us


def is_active(window_end_us: int, window_seconds: int, now_us: int) -> bool:
    """Whether a cluster (or incident) whose windows end at ``window_end_us`` is active at ``now_us``."""
    return window_end_us >= active_since_us(now_us, window_seconds * US_PER_SECOND)
DEFAULT_CHUNK = 4096


@dataclass(frozen=True)
class Rule:
    """W, N and E of SPEC 7: ``min_failures`` failures within ``window_seconds``, among ``min_events`` events.

    ``window_seconds`` is a whole number of seconds (``failure_cluster.window_seconds`` is an integer column,
    and cluster ids derive from it). Invalid values raise ``ValidationError``.
    """

    window_seconds: int = DEFAULT_WINDOW_SECONDS
    min_failures: int = DEFAULT_MIN_FAILURES
    min_events: int = DEFAULT_MIN_EVENTS

    def __post_init__(self) -> None:
        """Check W > 0 (whole seconds), N >= 2, E >= 1."""
        w, n, e = self.window_seconds, self.min_failures, self.min_events
        if isinstance(w, bool) or not isinstance(w, int) or not 0 < w <= MAX_WINDOW_SECONDS:
            raise ValidationError(
                f"window must be a whole number of seconds between 1 and {MAX_WINDOW_SECONDS}, got {w!r}"
            )
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 1_000_000:
            raise ValidationError(f"min_failures must be an integer >= 2 (at most 1000000), got {n!r}")
        if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= 1_000_000:
            raise ValidationError(f"min_events must be an integer >= 1 (at most 1000000), got {e!r}")

    @property
    def window_us(self) -> int:
        """W in microseconds (the unit of the ``*_us`` columns)."""
        return self.window_seconds * US_PER_SECOND

    def describe(self) -> str:
        """``window=600s, min_failures=3, min_events=2``: how messages and ``--rebuild`` hints name it."""
        w, n, e = self.window_seconds, self.min_failures, self.min_events
        return f"window={w}s, min_failures={n}, min_events={e}"


def parse_window(value: str | int | float) -> int:
    """A window given as seconds or a duration string (``"10m"``), in whole seconds (``ValidationError``
    otherwise)."""
    seconds = parse_duration(value)
    if seconds <= 0 or not seconds.is_integer():
        raise ValidationError(
            f"window must be a positive whole number of seconds (e.g. 600 or '10m'), got {value!r}"
        )
    return int(seconds)


def resolve_rule(
    remembered: Rule | None,
    window: str | int | float | None = None,
    min_failures: int | None = None,
    min_events: int | None = None,
) -> Rule:
    """The rule a ``correlate`` call asks for: each parameter given, else the remembered one, else the
    default."""
    base = remembered if remembered is not None else Rule()
    return Rule(
        base.window_seconds if window is None else parse_window(window),
        base.min_failures if min_failures is None else min_failures,
        base.min_events if min_events is None else min_events,
    )


FingerprintCounts = tuple[tuple[str | None, int], ...]


@dataclass(frozen=True)
class Span:
    """One cluster of one event type before it is stored: its time span and counts.

    ``fingerprints``: how many of its failures have each fingerprint, most frequent first (ties by
    fingerprint, None first), when the scanner was fed fingerprints; empty otherwise.
    """

    start_us: int
    end_us: int
    failure_count: int
    event_count: int
    fingerprints: FingerprintCounts = ()


def ranked(counts: Mapping[str | None, int]) -> FingerprintCounts:
    """Fingerprint counts, most frequent first, ties by fingerprint (None sorts as the empty string)."""
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0] or "")))


FOLD_FINGERPRINTS = 8192  # an open cluster's fingerprint list longer than this is folded into counts


def _count(prints: list[str | None], folded: Counter[str | None] | None) -> FingerprintCounts:
    """The ranked counts of a kept cluster's fingerprints: a list not yet counted, plus earlier folds."""
    if folded is None:
        if not prints:
            return ()
        distinct = set(prints)
        if len(distinct) == 1:  # the common case: one error, no sort
            return ((prints[0], len(prints)),)
        if len(distinct) <= 8:  # a few: list.count per fingerprint is cheaper than building a Counter
            return ranked({fp: prints.count(fp) for fp in distinct})
        folded = Counter()
    folded.update(prints)
    return ranked(folded)


def cluster_id(event_type: str, window_start_us: int, rule: Rule) -> str:
    """The deterministic id of a cluster: ``c_`` + 16 hex digits of a BLAKE2b of (type, start, W, N, E)."""
    rule_part = f"{rule.window_seconds}\x1f{rule.min_failures}\x1f{rule.min_events}"
    key = f"{event_type}\x1f{window_start_us}\x1f{rule_part}"
    return "c_" + blake2b(key.encode(), digest_size=8).hexdigest()


class ClusterScanner:
    """Streams one event type's failures, sorted by time, and yields its clusters as they close.

    Feed chunks with ``feed(times, events)`` (equal-length sequences, continuing the sort) and call
    ``finish()`` at the end; both return the spans that closed. Feeding each chunk's ``fingerprints`` too
    counts them per cluster (``Span.fingerprints``): the rebuild then needs no second pass over the
    members. ``keep_dropped`` also returns clusters with fewer than ``min_events`` events (they chain like
    any other; incremental correlation needs them only in tests). Out-of-order input raises
    ``ValueError``.
    """

    def __init__(self, rule: Rule, *, keep_dropped: bool = False) -> None:
        self.n = rule.min_failures
        self.window_us = rule.window_us
        self.min_events = 1 if keep_dropped else rule.min_events
        # The last N-1 failures seen: windows starting there need the next chunk to be judged.
        self._carry_t: list[int] = []
        self._carry_e: list[int] = []
        self._carry_f: list[str | None] = []
        self._offset = 0  # global index of the first element of the current (carry + chunk)
        # The open cluster: its first time, first index, last index, last time, events, fingerprints (a
        # list not yet counted, and the counts of earlier parts folded to keep memory bounded).
        self._open = False
        self._start_us = 0
        self._first = 0
        self._last = -1
        self._end_us = 0
        self._events: set[int] = set()
        self._prints: list[str | None] = []
        self._folded: Counter[str | None] | None = None

    def feed(
        self, times: Sequence[int], events: Sequence[int], fingerprints: Sequence[str | None] = ()
    ) -> list[Span]:
        """Consume the next sorted chunk (with its fingerprints, or none at all); return the clusters that
        closed in it."""
        if not times:
            return []
        if len(times) != len(events) or (fingerprints and len(fingerprints) != len(times)):
            raise ValueError("times, events and fingerprints must have the same length")
        t = [*self._carry_t, *times]
        e = [*self._carry_e, *events]
        f = [*self._carry_f, *fingerprints] if fingerprints else []
        if any(map(gt, t, islice(t, 1, None))):
            raise ValueError("failures must be fed in time order")
        n, closed = self.n, []
        # Window starting at local a qualifies when t[a+n-1] - t[a] <= W: one C-level pass per chunk.
        spreads = map(sub, islice(t, n - 1, None), t)
        starts = list(compress(count(), map(ge, repeat(self.window_us), spreads)))
        # Qualifying windows less than n apart overlap, so they surely chain: handle each such run at once
        # (a run starts where the distance to the previous qualifying window is n or more).
        gaps = map(sub, islice(starts, 1, None), starts)
        heads = [0, *(p + 1 for p in compress(count(), map(lt, repeat(n - 1), gaps)))]
        # The open cluster lives in locals during the loop (this loop is the rebuild's Python hot spot).
        offset, is_open, start_us, first, last, end_us = (
            self._offset, self._open, self._start_us, self._first, self._last, self._end_us)
        members, prints, folded = self._events, self._prints, self._folded
        for head, stop in zip(heads, [*heads[1:], len(starts)], strict=True):
            if head == stop:
                continue  # no qualifying window in this chunk
            a, end = starts[head], starts[stop - 1] + n - 1
            if is_open and t[a] <= end_us:
                # Joins: the new members are those after the cluster's last index.
                new = last - offset + 1
                members.update(e[new : end + 1])
                if f:
                    prints.extend(f[new : end + 1])
                    if len(prints) > FOLD_FINGERPRINTS:
                        folded = (folded or Counter()) + Counter(prints)
                        prints = []
            else:
                if is_open and len(members) >= self.min_events:
                    counts = _count(prints, folded)
                    closed.append(Span(start_us, end_us, last - first + 1, len(members), counts))
                is_open, start_us, first = True, t[a], offset + a
                members, prints, folded = set(e[a : end + 1]), f[a : end + 1], None
            last, end_us = offset + end, t[end]
        self._open, self._start_us, self._first, self._last, self._end_us = (
            is_open, start_us, first, last, end_us)
        self._events, self._prints, self._folded = members, prints, folded
        keep = min(n - 1, len(t))
        self._offset = offset + len(t) - keep
        self._carry_t, self._carry_e = t[len(t) - keep :], e[len(e) - keep :]
        self._carry_f = f[len(f) - keep :] if f else []
        return closed

    def finish(self) -> list[Span]:
        """End of the stream: return the last cluster, if one is open and kept."""
        if not self._open:
            return []
        self._open = False
        if len(self._events) < self.min_events:
            return []
        counts = _count(self._prints, self._folded)
        return [Span(self._start_us, self._end_us, self._last - self._first + 1, len(self._events), counts)]


def find_clusters(
    times_and_events: Iterable[tuple[int, int]], rule: Rule, *, chunk: int = DEFAULT_CHUNK
) -> Iterator[Span]:
    """The clusters of ONE event type's failures ``(at_us, event_id)``, sorted by time (ties in any order).

    Streaming: reads ``chunk`` failures at a time and yields each cluster once it can no longer grow.
    """
    scanner = ClusterScanner(rule)
    iterator = iter(times_and_events)
    while batch := list(islice(iterator, chunk)):
        yield from scanner.feed([f[0] for f in batch], [f[1] for f in batch])
    yield from scanner.finish()


def clean_cut(behind: Sequence[int], ahead: Iterable[int], rule: Rule) -> int | None:
    """Walk from a changed time away from it and find the nearest *clean cut*: a gap no cluster can cross.

    ``behind`` holds the (up to) N-1 failure times nearest the start on the side walked away from, in walk
    order, ending with the start time itself; ``ahead`` the further times in walk order (descending when
    walking left, ascending when walking right). A gap between consecutive failures ``x`` (nearer the start)
    and ``y`` is clean when ``x != y`` and no qualifying window holds both: then neither a window nor the
    chaining rule connects the two sides (a window joins only a window it overlaps, or one ending at its own
    first time, which a gap between different times rules out), and clusters on each side are computed
    independently of the other. Returns ``x``, the time nearest the start beyond which nothing can change,
    or ``None`` when the data ends first (the affected range is then unbounded on that side).
    """
    n, w = rule.min_failures, rule.window_us
    recent: list[int] = []  # the last n times of the walk
    first_candidate = len(behind)  # gaps inside `behind` lie on the other side of the start
    furthest_covered = -1  # the furthest index any qualifying window seen so far reaches
    for index, value in enumerate(_chain(behind, ahead)):
        recent.append(value)
        if len(recent) > n:
            del recent[0]
        start = index - n + 1  # the window ending here starts at `start`
        if start < 0:
            continue
        if abs(value - recent[0]) <= w:
            furthest_covered = index
        # Every window starting at or before `start` is known now, so the gap after `start` is decided.
        gap = start + 1
        if gap >= first_candidate and furthest_covered < gap and recent[0] != recent[1]:
            return recent[0]
    return None


def _chain(first: Sequence[int], rest: Iterable[int]) -> Iterator[int]:
    yield from first
    yield from rest
