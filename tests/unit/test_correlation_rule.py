"""The pure correlation rule (SPEC 7) against a slow reference written literally from the spec."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failure_aware.correlation.incremental import range_in_page
from failure_aware.correlation.rule import (
    ClusterScanner,
    Rule,
    Span,
    clean_cut,
    cluster_id,
    find_clusters,
    parse_window,
    resolve_rule,
)
from failure_aware.domain.errors import ValidationError

S = 1_000_000  # microseconds per second
Failure = tuple[int, int]  # (at_us, event_id)


# -- the reference ---------------------------------------------------------------------------------------
def reference(failures: Sequence[Failure], rule: Rule, *, keep_dropped: bool = False) -> list[Span]:
    """SPEC 7, sentence by sentence, for one event type. Ties keep the order they are given in."""
    f = sorted(failures, key=lambda x: x[0])  # "sort its failures by time" (stable: ties as given)
    t = [x[0] for x in f]
    n, w = rule.min_failures, rule.window_us
    # "For each i with t_(i+N-1) - t_i <= W, the window [i, i+N-1] qualifies."
    qualifying = [i for i in range(len(f) - n + 1) if t[i + n - 1] - t[i] <= w]
    # "Take qualifying windows in order of i; a window joins the current cluster when its first failure's
    # time is at or before the last failure time of the previous qualifying window, otherwise it starts a
    # new cluster."
    clusters: list[list[int]] = []
    previous: int | None = None
    for i in qualifying:
        if previous is not None and t[i] <= t[previous + n - 1]:
            clusters[-1][1] = i + n - 1
        else:
            clusters.append([i, i + n - 1])
        previous = i
    # "A cluster covers the failures from its first window's first index to its last window's last index"
    spans = []
    for first, last in clusters:
        events = {f[k][1] for k in range(first, last + 1)}
        # "Clusters with event_count < E are dropped."
        if keep_dropped or len(events) >= rule.min_events:
            spans.append(Span(t[first], t[last], last - first + 1, len(events)))
    return spans


# -- strategies ------------------------------------------------------------------------------------------
rules = st.builds(
    Rule,
    window_seconds=st.integers(1, 12),
    min_failures=st.integers(2, 5),
    min_events=st.integers(1, 4),
)


@st.composite
def failure_sets(draw: st.DrawFn, max_size: int = 50) -> list[Failure]:
    """Failures with many ties, bursts and single events retrying: mostly whole seconds (ties), some odd
    microseconds, a few events (so one event often fails several times in a row), dense and sparse parts."""
    events = draw(st.integers(1, 6))
    scale = draw(st.sampled_from([1, 1, 2, 5]))  # spread the same shape thinner
    raw = draw(st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from([0, 0, 0, 1, 499_999]), st.integers(1, events)),
        max_size=max_size,
    ))
    return [(second * scale * S + micro, event) for second, micro, event in raw]


def shuffled_ties(failures: Sequence[Failure], seed: int) -> list[Failure]:
    """Sorted by time with equal times in a random order."""
    rng = random.Random(seed)
    items = list(failures)
    rng.shuffle(items)
    return sorted(items, key=lambda x: x[0])


# -- find_clusters vs reference -------------------------------------------------------------------------
@settings(max_examples=300)
@given(failure_sets(), rules, st.integers(0, 2**32))
def test_find_clusters_matches_reference(failures: list[Failure], rule: Rule, seed: int) -> None:
    ordered = shuffled_ties(failures, seed)
    assert list(find_clusters(ordered, rule)) == reference(sorted(failures), rule)


@settings(max_examples=300)
@given(failure_sets(), rules, st.integers(0, 2**32), st.lists(st.integers(1, 7), min_size=1))
def test_scanner_in_any_chunking_matches_reference(
    failures: list[Failure], rule: Rule, seed: int, chunk_sizes: list[int]
) -> None:
    ordered = shuffled_ties(failures, seed)
    found = scan_in_chunks(ClusterScanner(rule, keep_dropped=True), ordered, chunk_sizes)
    assert found == reference(ordered, rule, keep_dropped=True)


def scan_in_chunks(
    scanner: ClusterScanner, ordered: list[Failure], sizes: list[int],
    label: dict[Failure, str | None] | None = None,
) -> list[Span]:
    """Feed ``ordered`` to the scanner in chunks of the given sizes (cycled), with labels if given."""
    found: list[Span] = []
    position, k = 0, 0
    while position < len(ordered):
        part = ordered[position : position + sizes[k % len(sizes)]]
        prints = [label[p] for p in part] if label is not None else []
        found += scanner.feed([p[0] for p in part], [p[1] for p in part], prints)
        position, k = position + len(part), k + 1
    return found + scanner.finish()


@settings(max_examples=300)
@given(failure_sets(), rules, st.integers(0, 2**32), st.lists(st.integers(1, 7), min_size=1))
def test_scanner_counts_fingerprints_of_exactly_its_members(
    failures: list[Failure], rule: Rule, seed: int, chunk_sizes: list[int]
) -> None:
    """Fed a label per failure, each span counts the labels of every failure in [start, end], ranked."""
    ordered = shuffled_ties(failures, seed)
    label = {f: None if f[1] == 1 else f"fp{(f[0] // S + f[1]) % 3}" for f in ordered}
    found = scan_in_chunks(ClusterScanner(rule, keep_dropped=True), ordered, chunk_sizes, label)
    expected = []
    for span in reference(ordered, rule, keep_dropped=True):
        counts = Counter(label[f] for f in ordered if span.start_us <= f[0] <= span.end_us)
        ranked = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or "")))
        expected.append(Span(span.start_us, span.end_us, span.failure_count, span.event_count, ranked))
    assert found == expected


@settings(max_examples=300)
@given(failure_sets(), rules, st.integers(0, 2**32), st.integers(0, 2**32))
def test_reference_ignores_the_order_of_equal_times(
    failures: list[Failure], rule: Rule, seed_a: int, seed_b: int
) -> None:
    """The spec's promise, checked on the reference itself: clusters never split equal times."""
    a = reference(shuffled_ties(failures, seed_a), rule, keep_dropped=True)
    b = reference(shuffled_ties(failures, seed_b), rule, keep_dropped=True)
    assert a == b


@settings(max_examples=200)
@given(failure_sets(), rules)
def test_clusters_never_overlap_and_hold_every_failure_in_their_span(
    failures: list[Failure], rule: Rule
) -> None:
    spans = list(find_clusters(sorted(failures), rule))
    for before, after in itertools.pairwise(spans):
        assert before.end_us < after.start_us
    for span in spans:
        inside = [f for f in failures if span.start_us <= f[0] <= span.end_us]
        assert span.failure_count == len(inside)
        assert span.event_count == len({e for _, e in inside}) >= rule.min_events


def test_a_worked_example() -> None:
    rule = Rule(window_seconds=10, min_failures=3, min_events=2)
    # 0,5,9 qualify (events 1,2,1); 9,12,18 qualify and chain (9 <= 9); 40,41,42 is one event retrying.
    failures = [(0, 1), (5, 2), (9, 1), (12, 3), (18, 3), (40, 4), (41, 4), (42, 4), (100, 5)]
    spans = list(find_clusters([(t * S, e) for t, e in failures], rule))
    assert spans == [Span(0, 18 * S, 5, 3)]
    dropped = ClusterScanner(rule, keep_dropped=True)
    assert dropped.feed([t * S for t, _ in failures], [e for _, e in failures]) + dropped.finish() == [
        Span(0, 18 * S, 5, 3), Span(40 * S, 42 * S, 3, 1)
    ]


def test_out_of_order_input_is_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        list(find_clusters([(5, 1), (6, 1), (7, 1), (1, 1)], Rule(), chunk=3))


# -- clean cuts and the incremental algorithm, simulated without a database --------------------------------
def walk_inputs(times: list[int], start: int, *, left: bool, n: int) -> tuple[list[int], list[int]]:
    if left:
        return [t for t in times if t >= start][: n - 1][::-1], [t for t in reversed(times) if t < start]
    return [t for t in times if t <= start][-(n - 1) :], [t for t in times if t > start]


@settings(max_examples=400)
@given(failure_sets(), rules, st.data())
def test_a_clean_cut_splits_the_computation(failures: list[Failure], rule: Rule, data: st.DataObject) -> None:
    if not failures:
        return
    ordered = sorted(failures)
    times = [t for t, _ in ordered]
    start = data.draw(st.sampled_from(times))
    left = data.draw(st.booleans())
    cut = clean_cut(*walk_inputs(times, start, left=left, n=rule.min_failures), rule)
    if cut is None:
        return
    assert (cut <= start) if left else (cut >= start)
    near = [f for f in ordered if (f[0] >= cut if left else f[0] <= cut)]
    far = [f for f in ordered if (f[0] < cut if left else f[0] > cut)]
    together = reference(ordered, rule, keep_dropped=True)
    apart = reference(far, rule, keep_dropped=True) + reference(near, rule, keep_dropped=True)
    assert sorted(together, key=lambda s: s.start_us) == sorted(apart, key=lambda s: s.start_us)


def incremental(old: list[Failure], new: list[Failure], rule: Rule) -> list[Span]:
    """The engine's algorithm over lists: recompute only between the clean cuts around each new time."""
    stored = reference(old, rule)
    everything = sorted(old + new)
    times = [t for t, _ in everything]
    done: int | None = None
    finished = False
    for changed in sorted({t for t, _ in new}):
        if finished or (done is not None and changed <= done):
            continue
        lo = clean_cut(*walk_inputs(times, changed, left=True, n=rule.min_failures), rule)
        hi = clean_cut(*walk_inputs(times, changed, left=False, n=rule.min_failures), rule)
        low, high = -(2**63) if lo is None else lo, 2**63 if hi is None else hi
        stored = [s for s in stored if s.end_us < low or s.start_us > high]
        stored += reference([f for f in everything if low <= f[0] <= high], rule)
        done, finished = hi, hi is None
    return sorted(stored, key=lambda s: s.start_us)


@settings(max_examples=400)
@given(failure_sets(), failure_sets(max_size=12), rules)
def test_incremental_algorithm_equals_rebuild(old: list[Failure], new: list[Failure], rule: Rule) -> None:
    assert incremental(old, new, rule) == reference(old + new, rule)


# -- ids and rules -----------------------------------------------------------------------------------------
def test_cluster_ids_are_deterministic_and_tell_rules_apart() -> None:
    rule = Rule(600, 3, 2)
    first = cluster_id("payment.webhook", 1_700_000_000_000_000, rule)
    assert first == cluster_id("payment.webhook", 1_700_000_000_000_000, Rule(600, 3, 2))
    assert first.startswith("c_") and len(first) == 18
    others = {
        cluster_id("payment.webhook", 1_700_000_000_000_001, rule),
        cluster_id("payment.webhooks", 1_700_000_000_000_000, rule),
        cluster_id("payment.webhook", 1_700_000_000_000_000, Rule(601, 3, 2)),
        cluster_id("payment.webhook", 1_700_000_000_000_000, Rule(600, 4, 2)),
        cluster_id("payment.webhook", 1_700_000_000_000_000, Rule(600, 3, 1)),
    }
    assert first not in others and len(others) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_seconds": 0}, "window"),
        ({"window_seconds": -5}, "window"),
        ({"window_seconds": 1.5}, "window"),
        ({"window_seconds": True}, "window"),
        ({"min_failures": 1}, "min_failures"),
        ({"min_failures": "3"}, "min_failures"),
        ({"min_events": 0}, "min_events"),
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rule(**kwargs)  # type: ignore[arg-type]


def test_windows_parse_from_durations_and_defaults_resolve() -> None:
    assert parse_window("10m") == 600
    assert parse_window(90) == 90
    with pytest.raises(ValidationError, match="whole number"):
        parse_window("1.5s")
    with pytest.raises(ValidationError, match="whole number"):
        parse_window(0)
    assert resolve_rule(None) == Rule(600, 3, 2)
    remembered = Rule(60, 4, 1)
    assert resolve_rule(remembered) == remembered
    assert resolve_rule(remembered, window="2m") == Rule(120, 4, 1)
    assert resolve_rule(remembered, min_events=3) == Rule(60, 4, 3)


@settings(max_examples=400)
@given(failure_sets(), rules, st.data())
def test_a_page_around_a_change_gives_the_cuts_of_the_whole_history_or_nothing(
    failures: list[Failure], rule: Rule, data: st.DataObject
) -> None:
    """``engine.range_in_page`` either decides both cuts exactly as walks over everything would, with every
    failure between them, or says the page is too short."""
    if not failures:
        return
    ordered = sorted(failures)
    times = [t for t, _ in ordered]
    changed = data.draw(st.sampled_from(times))
    page = data.draw(st.integers(rule.min_failures - 1, 12).filter(lambda p: p > 0))
    below = sorted((f for f in ordered if f[0] < changed), reverse=True)[:page]
    above = [f for f in ordered if f[0] >= changed][:page]
    found = range_in_page(below, above, changed, rule, len(below) < page, len(above) < page)
    lo = clean_cut(*walk_inputs(times, changed, left=True, n=rule.min_failures), rule)
    hi = clean_cut(*walk_inputs(times, changed, left=False, n=rule.min_failures), rule)
    if found is None:
        assert len(below) == page or len(above) == page  # only a full page can be too short
        return
    assert found[:2] == (lo, hi)
    inside = [f for f in ordered if (lo is None or f[0] >= lo) and (hi is None or f[0] <= hi)]
    assert sorted(found[2]) == inside
