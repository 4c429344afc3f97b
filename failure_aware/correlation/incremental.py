"""Incremental ``correlate``: recompute only the ranges, bounded by clean cuts, around new failures.

Why a range between two clean cuts can be recomputed on its own, and why that equals a rebuild: see
``engine``. This module finds the ranges and writes them, in *rounds* that serve every event type at once:

1. the dirty times (failures recorded since the last run, ``failures.dirty``) are read in blocks of at
   most ``DIRTY_BLOCK``, grouped by type;
2. each round takes, for every type with dirty times left, the next one not yet inside a recomputed range,
   and reads the page of failures on both sides of all of them in one statement
   (``failures.neighbourhoods``); a page usually holds both clean cuts and everything between them
   (``range_in_page``);
3. the stored clusters of all those ranges are read in one statement, compared with the recomputed ones,
   and the differences written with one DELETE and one INSERT for the whole round.

So a run costs a handful of statements however many types it touches (it was a few per type: on
PostgreSQL, where each is a round trip, that was most of an incremental run). A type whose page is too
short to decide a cut walks on by itself, streaming, as far as it must (``_around_far``), and is written
at once. Rounds repeat for dirty times beyond the ranges already done; with new failures appended at the
end of history, one round does everything.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter

from failure_aware.correlation import failures
from failure_aware.correlation.failures import Failure, Probe
from failure_aware.correlation.rule import ClusterScanner, Rule, Span, clean_cut
from failure_aware.correlation.sql import Sql
from failure_aware.correlation.writes import Range, Tally, replace_ranges, rewrite_range

DIRTY_BLOCK = 50_000  # dirty times held in memory at once
_DONE = 2**63  # a type whose range reached the end of its failures: later dirty times are inside it
_TIME = itemgetter(0)


def run(sql: Sql, rule: Rule, after_id: int, upto_id: int, tally: Tally) -> None:
    """Recompute the ranges around the failures with ``after_id < id <= upto_id``."""
    done: dict[str, int] = {}  # per type: dirty times at or before this are inside a recomputed range
    for block in _blocks(failures.dirty(sql, after_id, upto_id)):
        _rounds(sql, rule, block, done, tally)


def _blocks(dirty: Iterable[tuple[str, int]]) -> Iterator[dict[str, deque[int]]]:
    """The dirty ``(type, time)`` stream (sorted) as dicts type -> times, at most ``DIRTY_BLOCK`` each."""
    block: dict[str, deque[int]] = {}
    size = 0
    for event_type, at_us in dirty:
        block.setdefault(event_type, deque()).append(at_us)
        size += 1
        if size >= DIRTY_BLOCK:
            yield block
            block, size = {}, 0
    if block:
        yield block


@dataclass(frozen=True)
class _Page:
    """Failures of one type read around a point, in time order; ``*_complete``: nothing of the type lies
    beyond that end (the page was not cut short there)."""

    failures: list[Failure]
    left_complete: bool
    right_complete: bool

    def split(self, at_us: int) -> tuple[list[Failure], list[Failure]]:
        """``range_in_page``'s inputs for a point: failures before it (nearest first), and from it on."""
        cut = bisect_left(self.failures, at_us, key=_TIME)
        return self.failures[:cut][::-1], self.failures[cut:]


def _rounds(sql: Sql, rule: Rule, block: dict[str, deque[int]], done: dict[str, int], tally: Tally) -> None:
    """Recompute and write the ranges around a block's dirty times, a round per "next dirty time of every
    type" (``done`` carries each type's last recomputed range over to the next block)."""
    for event_type, times in block.items():
        tally.types.add(event_type)
        tally.failures_read += len(times)
    while points := _next_points(block, done):
        ranges = []
        for point, decided in zip(points, _pages_for(sql, points, rule, block, tally), strict=True):
            event_type = point[0]
            if decided is None:  # the page was too short: this type walks on alone, streaming
                _mark(done, event_type, _around_far(sql, point, rule, tally))
                continue
            page, found = decided
            ranges.append(found)
            _mark(done, event_type, found.hi)
            ranges.extend(_more_in_page(page, block[event_type], done, rule, event_type))
        replace_ranges(sql, rule, ranges, tally)


def _more_in_page(
    page: _Page, times: deque[int], done: dict[str, int], rule: Rule, event_type: str
) -> Iterator[Range]:
    """The ranges of the type's next dirty times that the page already read decides (new failures often
    come in several runs with clean cuts between them: this saves a round, and a read, per run)."""
    if not page.failures:
        return
    last_us = page.failures[-1][0]
    while True:
        _skip_done(times, done.get(event_type))
        if not times or times[0] > last_us:
            return
        below, above = page.split(times[0])
        decided = range_in_page(below, above, times[0], rule, page.left_complete, page.right_complete)
        if decided is None:
            return  # the next round reads a page around it
        times.popleft()
        lo, hi, members = decided
        _mark(done, event_type, hi)
        yield Range(event_type, lo, hi, _spans(members, rule))


def _next_points(block: dict[str, deque[int]], done: dict[str, int]) -> list[tuple[str, int]]:
    """For each type, its next dirty time not inside a range already recomputed."""
    points = []
    for event_type, times in block.items():
        _skip_done(times, done.get(event_type))
        if times:
            points.append((event_type, times.popleft()))
    return points


def _skip_done(times: deque[int], done_upto: int | None) -> None:
    """Drop the dirty times inside the range already recomputed (up to ``done_upto``)."""
    while times and done_upto is not None and times[0] <= done_upto:
        times.popleft()


def _mark(done: dict[str, int], event_type: str, hi: int | None) -> None:
    done[event_type] = _DONE if hi is None else hi


def _pages_for(
    sql: Sql, points: Sequence[tuple[str, int]], rule: Rule, block: dict[str, deque[int]], tally: Tally
) -> list[tuple[_Page, Range] | None]:
    """The range around each point, and the page that decided it, when some page size does (None: walk
    on, streaming)."""
    found: list[tuple[_Page, Range] | None] = [None] * len(points)
    last: dict[int, _Read] = {}  # per undecided point: what the last read asked for and decided
    for size in _pages(rule):
        undecided = [k for k, f in enumerate(found) if f is None]
        if not undecided:
            break
        probes = [_probe(points[k], size, rule, len(block[points[k][0]]), last.get(k)) for k in undecided]
        pages = failures.neighbourhoods(sql, probes)
        for k, probe, (below, above) in zip(undecided, probes, pages, strict=True):
            tally.failures_read += len(below) + len(above)
            event_type, changed_us, before, after = probe
            page = _Page(below[::-1] + above, len(below) < before, len(above) < after)
            lo, hi, left_known, right_known = _cuts(below, above, changed_us, rule, page)
            if left_known and right_known:
                found[k] = page, Range(event_type, lo, hi, _spans(_between(page.failures, lo, hi), rule))
            else:
                last[k] = _Read(before, after, left_known, right_known)
    return found


@dataclass(frozen=True)
class _Read:
    before: int
    after: int
    left_known: bool
    right_known: bool


def _probe(point: tuple[str, int], size: int, rule: Rule, dirty_after: int, last: _Read | None) -> Probe:
    """What to read around a point with a page size; a side an earlier read decided gets no more."""
    before, after = _sizes(size, rule, dirty_after)
    if last is not None:
        before = last.before if last.left_known else before
        after = last.after if last.right_known else after
    return point[0], point[1], before, after


def _pages(rule: Rule) -> tuple[int, ...]:
    """Page sizes to try around a changed time before streaming (each must be at least N - 1).

    The first page is tiny, 2N (N - 1 failures before the time, 2N from it on, or as many as the type's
    other dirty times need): a late failure usually falls alone between two clean cuts, and deciding
    both takes N - 1 failures on each side of it (of the benchmark's 1,000 failures scattered over a
    month of 1,000 types, 95 % make a range of that failure alone). Then 4 and 32 times a page of
    ``WALK_PAGE`` (or 4N): the second page is needed for about a twentieth of the points there, and then
    rarely needs to be large. Issue 15: a first page of 16 rather than 64 read 20k failures instead of
    66k there, and one of 2N 12k instead of 22k (about 8 ms of CPU off that run's 100 on SQLite, where a
    page costs about 20 microseconds however small).
    """
    page = max(failures.WALK_PAGE, 4 * rule.min_failures)
    return 2 * rule.min_failures, 4 * page, 32 * page


def _sizes(page: int, rule: Rule, dirty_after: int) -> tuple[int, int]:
    """How many failures to read before and from a changed time, for a page size: a quarter before (a
    clean cut is usually near), and after it enough for the type's other dirty times as well, up to 16
    pages of ``WALK_PAGE`` at least (new failures tend to come together: one read then decides several
    ranges)."""
    before = max(page // 4, rule.min_failures - 1)
    return before, max(page, min(dirty_after + before, 16 * max(page, failures.WALK_PAGE)))


def _spans(members: Sequence[Failure], rule: Rule) -> list[Span]:
    if len(members) < rule.min_failures:  # no window: most late failures fall alone between two cuts
        return []
    scanner = ClusterScanner(rule)
    times, events, prints = zip(*members, strict=True) if members else ((), (), ())
    return scanner.feed(times, events, prints) + scanner.finish()


def range_in_page(
    below: list[Failure], above: list[Failure], changed_us: int, rule: Rule, left_complete: bool,
    right_complete: bool,
) -> tuple[int | None, int | None, list[Failure]] | None:
    """The clean cuts around ``changed_us`` and the failures between them, if a page decides them.

    ``below``: failures before ``changed_us``, nearest first; ``above``: failures at or after it, in time
    order (``failures.neighbourhoods``); ``*_complete``: the type has no failures beyond that end of the
    page. None when the page is too short to tell.
    """
    page = _Page([*reversed(below), *above], left_complete, right_complete)
    lo, hi, left_known, right_known = _cuts(below, above, changed_us, rule, page)
    if not (left_known and right_known):
        return None
    return lo, hi, _between(page.failures, lo, hi)


def _cuts(
    below: list[Failure], above: list[Failure], changed_us: int, rule: Rule, page: _Page
) -> tuple[int | None, int | None, bool, bool]:
    """Both clean cuts a page shows (None: none in it) and whether each is known: found, or the page
    holds everything on that side (the range is then unbounded there)."""
    n = rule.min_failures
    lo = clean_cut([f[0] for f in above[: n - 1]][::-1], [f[0] for f in below], rule)
    equal = sum(1 for f in above if f[0] == changed_us)  # `above` starts with the changed time itself
    up_to_changed = [f[0] for f in reversed(below)] + [f[0] for f in above[:equal]]
    hi = clean_cut(up_to_changed[-(n - 1) :], [f[0] for f in above[equal:]], rule)
    return lo, hi, lo is not None or page.left_complete, hi is not None or page.right_complete


def _between(ordered: list[Failure], lo: int | None, hi: int | None) -> list[Failure]:
    """The failures of a time-ordered list with ``lo <= time <= hi`` (None: unbounded)."""
    start = 0 if lo is None else bisect_left(ordered, lo, key=_TIME)
    stop = len(ordered) if hi is None else bisect_right(ordered, hi, key=_TIME)
    return ordered[start:stop]


def _around_far(sql: Sql, point: tuple[str, int], rule: Rule, tally: Tally) -> int | None:
    """Walk to both clean cuts, streaming, recompute the range between them and write it; its upper cut."""
    event_type, changed_us = point
    lo = _cut(sql, event_type, changed_us, rule, left=True)
    hi = _cut(sql, event_type, changed_us, rule, left=False)
    rewrite_range(sql, rule, event_type, lo, hi, tally)
    return hi


def _cut(sql: Sql, event_type: str, start_us: int, rule: Rule, *, left: bool) -> int | None:
    behind, ahead = failures.walk(sql, event_type, start_us, left=left, n=rule.min_failures)
    try:
        return clean_cut(behind, ahead, rule)
    finally:
        ahead.close()


