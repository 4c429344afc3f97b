"""Correlation through the Ledger on SQLite and PostgreSQL, against the slow reference of SPEC 7.

Hypothesis examples share one database per test (creating a schema per example would dominate the run);
each example writes its own event types (a fresh prefix), so examples cannot see each other's failures,
and the other examples' data is simply more history around them.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from conftest import FakeClock, drop_database, make_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_correlation_rule import reference, walk_inputs

from failure_aware import Ledger, NotFound, ValidationError
from failure_aware.config import Config
from failure_aware.correlation import Rule, cluster_id, clusters_match_rebuild, incremental
from failure_aware.correlation import failures as reads
from failure_aware.correlation.sql import Sql
from failure_aware.domain.fingerprint import fingerprint
from failure_aware.domain.policy import PolicySet, RetryPolicy
from failure_aware.domain.timeutil import format_time, to_us
from failure_aware.storage.tables import metadata

CONFIG = Config(policies=PolicySet(default=RetryPolicy(max_attempts=1_000_000)))  # events never die here
BASE = datetime(2026, 1, 1, tzinfo=UTC)
# Same length and shape within a statement, so "smallest message" is the same in every collation.
MESSAGES = (
    "timeout after 30s", "timeout after 45s", "connection refused by db-7", "connection refused by db-9",
    "deadlock detected",
)
DB_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_prefixes = itertools.count()


@dataclass(frozen=True)
class Fail:
    """One failure to record: its type, event (index within the example), time and message."""

    event_type: str
    event: int
    at_us: int
    message: str


@pytest.fixture
def big_ledger(db_url: str, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger whose retry policy never kills an event, so any number of failures can be recorded."""
    clock.now = BASE + timedelta(days=30)
    with Ledger(db_url, config=CONFIG, clock=clock) as opened:
        yield opened


# -- strategies ------------------------------------------------------------------------------------------
rules = st.builds(Rule, window_seconds=st.integers(1, 20), min_failures=st.integers(2, 4),
                  min_events=st.integers(1, 3))


@st.composite
def histories(draw: st.DrawFn) -> list[Fail]:
    """Several types; bursts, ties, sparse stretches; few events per type, so single events retry."""
    prefix = f"t{next(_prefixes)}."
    types = [prefix + name for name in draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3,
                                                     unique=True))]
    scale = draw(st.sampled_from([1, 3]))
    raw = draw(st.lists(
        st.tuples(st.sampled_from(types), st.integers(0, 5), st.integers(0, 60),
                  st.sampled_from([0, 0, 0, 1, 250_000]), st.sampled_from(MESSAGES)),
        min_size=1, max_size=40,
    ))
    return [Fail(t, e, to_us(BASE) + s * scale * 1_000_000 + micro, m) for t, e, s, micro, m in raw]


# -- recording a history in batches ------------------------------------------------------------------------
def by_event(history: Sequence[Fail]) -> dict[tuple[str, int], list[Fail]]:
    events: dict[tuple[str, int], list[Fail]] = {}
    for f in sorted(history, key=lambda f: (f.at_us, f.message)):
        events.setdefault((f.event_type, f.event), []).append(f)
    return events


def plan(history: Sequence[Fail], batches: int, rng: random.Random) -> list[list[tuple[str, Any]]]:
    """Random batches: an event arrives by import (its first failures, at any times: late ones included) in
    one batch, and the rest of its failures are reported one by one, in time order, in that or later ones."""
    steps: list[list[tuple[str, Any]]] = [[] for _ in range(batches)]
    for key, failures in by_event(history).items():
        split = rng.randint(0, len(failures))
        first = rng.randrange(batches)
        steps[first].append(("import", (key, failures[:split])))
        later = sorted(rng.randint(first, batches - 1) for _ in failures[split:])
        for batch, f in zip(later, failures[split:], strict=True):
            steps[batch].append(("report", (key, f)))
    return steps


def record(ledger: Ledger, steps: list[tuple[str, Any]]) -> None:
    """Write one batch: its imports in one call, then its reports (each event's in time order)."""
    records = [
        {
            "event_type": key[0], "key": f"e{key[1]}", "detected_at": format_time(BASE - timedelta(days=1)),
            "attempts": [{"at": format_time(_dt(f.at_us)), "outcome": "failed", "error": f.message}
                         for f in failures],
        }
        for kind, (key, failures) in steps if kind == "import"
    ]
    if records:
        assert ledger.import_events(records).imported == len(records)
    for kind, (key, f) in steps:
        if kind == "report":
            ledger.report(event_id(ledger, key), False, error=f.message, at=_dt(f.at_us), force=True)


def event_id(ledger: Ledger, key: tuple[str, int]) -> int:
    ed = metadata.tables["event_detected"]
    with ledger.store.read() as conn:
        return int(conn.execute(
            sa.select(ed.c.id).where(ed.c.event_type == key[0], ed.c.key == f"e{key[1]}")
        ).scalar_one())


def _dt(at_us: int) -> datetime:
    return BASE + timedelta(microseconds=at_us - to_us(BASE))


# -- what the reference expects ------------------------------------------------------------------------------
def expected_rows(history: Sequence[Fail], rule: Rule) -> dict[str, tuple[Any, ...]]:
    rows = {}
    for event_type in {f.event_type for f in history}:
        mine = [f for f in history if f.event_type == event_type]
        for span in reference([(f.at_us, f.event) for f in mine], rule):
            inside = [f for f in mine if span.start_us <= f.at_us <= span.end_us]
            counts = Counter(fingerprint(f.message) for f in inside)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            tops = [[fp, n, min(f.message for f in inside if fingerprint(f.message) == fp)]
                    for fp, n in ranked]
            cid = cluster_id(event_type, span.start_us, rule)
            rows[cid] = (event_type, span.start_us, span.end_us, span.failure_count, span.event_count, tops)
    return rows


def stored_rows(ledger: Ledger, types: set[str]) -> dict[str, tuple[Any, ...]]:
    rows = {}
    for c in ledger.clusters():
        if c.event_type in types:
            tops = [[t.fingerprint, t.count, t.example] for t in c.top_fingerprints]
            rows[c.id] = (c.event_type, to_us(c.window_start), to_us(c.window_end), c.failure_count,
                          c.event_count, tops)
    return rows


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: a picture of the whole database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                    for t in metadata.sorted_tables}
    finally:
        engine.dispose()


# -- properties ----------------------------------------------------------------------------------------------
@DB_SETTINGS
@given(history=histories(), rule=rules, batches=st.integers(1, 4), seed=st.integers(0, 2**32))
def test_correlate_matches_the_reference(
    big_ledger: Ledger, history: list[Fail], rule: Rule, batches: int, seed: int
) -> None:
    big_ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
    for step in plan(history, batches, random.Random(seed)):
        record(big_ledger, step)
        report = big_ledger.correlate()
        assert report.mode == "incremental"
    assert stored_rows(big_ledger, {f.event_type for f in history}) == expected_rows(history, rule)


@DB_SETTINGS
@given(history=histories(), rule=rules, batches=st.integers(2, 5), seed=st.integers(0, 2**32),
       pages=st.sampled_from(["default", "tiny", "stream"]), block=st.sampled_from([1, 3, 50_000]))
def test_incremental_in_random_batches_equals_rebuild(
    big_ledger: Ledger, history: list[Fail], rule: Rule, batches: int, seed: int, pages: str, block: int
) -> None:
    """Also with pages around a change too small to hold the clean cuts (the walks then read on), and with
    no pages at all (every walk streams)."""
    big_ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
    sizes = {"default": incremental._pages(rule), "tiny": (rule.min_failures,), "stream": ()}[pages]
    for step in plan(history, batches, random.Random(seed)):
        record(big_ledger, step)
        # Dirty times in blocks of 1-3 as well: a type's times then span blocks.
        with mock.patch.object(incremental, "_pages", lambda _rule: sizes), \
                mock.patch.object(incremental, "DIRTY_BLOCK", block):
            report = big_ledger.correlate()
        assert report.clusters_total == len(big_ledger.clusters())  # the remembered total stays exact
    types = {f.event_type for f in history}
    incrementally = stored_rows(big_ledger, types)
    rebuilt = big_ledger.correlate(rebuild=True)
    assert stored_rows(big_ledger, types) == incrementally
    assert (rebuilt.added, rebuilt.removed, rebuilt.changed) == (0, 0, 0)  # nothing anywhere was stale
    with big_ledger.store.read() as conn:
        assert clusters_match_rebuild(conn) == []


@DB_SETTINGS
@given(history=histories(), rule=rules, seeds=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)))
def test_clusters_do_not_depend_on_insertion_order_or_ids(
    big_ledger: Ledger, second_ledger: Ledger, history: list[Fail], rule: Rule, seeds: tuple[int, int]
) -> None:
    results = []
    for ledger, seed in ((big_ledger, seeds[0]), (second_ledger, seeds[1])):
        rng = random.Random(seed)
        for _ in range(rng.randint(0, 3)):  # shift the event and attempt ids of this database
            ledger.detect("padding", key=None)
        ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
        shuffled = list(history)
        rng.shuffle(shuffled)
        for step in plan(shuffled, rng.randint(1, 3), rng):
            record(ledger, step)
            ledger.correlate()
        with ledger.store.read() as conn:
            rows = conn.execute(sa.select(metadata.tables["failure_cluster"])).all()
        results.append(sorted(tuple(r) for r in rows if r.event_type in {f.event_type for f in history}))
    assert results[0] == results[1]


@pytest.fixture
def second_ledger(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Another, independent database of the same backend."""
    url, token = make_database(backend, tmp_path_factory)
    with Ledger(url, config=CONFIG, clock=FakeClock(BASE + timedelta(days=30))) as opened:
        yield opened
    drop_database(token)


# -- examples ----------------------------------------------------------------------------------------------
def burst(ledger: Ledger, event_type: str, seconds: Sequence[float], *, events: int = 2,
          message: str = "timeout after 30s") -> list[int]:
    """Record failures of ``event_type`` at BASE + seconds, round-robin over ``events`` new events."""
    ids = [ledger.detect(event_type, at=BASE - timedelta(days=1)).id for _ in range(events)]
    for k, second in enumerate(sorted(seconds)):
        ledger.report(ids[k % events], False, error=message, at=BASE + timedelta(seconds=second), force=True)
    return ids


def test_inspection_writes_nothing(big_ledger: Ledger, db_url: str) -> None:
    ids = burst(big_ledger, "pay", [0, 10, 20, 30])
    burst(big_ledger, "mail", [5, 6, 7], events=3)
    big_ledger.correlate()
    cluster = big_ledger.clusters(event_type="pay")[0]
    big_ledger.annotate_cluster(cluster.id, "provider incident", author="ops")
    burst(big_ledger, "pay", [40])  # a failure not yet correlated: reading must not correlate it
    before = dump(db_url)
    assert big_ledger.clusters() and big_ledger.clusters(active=True) == []
    assert big_ledger.cluster(cluster.id).annotations
    assert big_ledger.clusters_of_event(ids[0])
    assert big_ledger.timeline(buckets=5).rows
    with big_ledger.store.read() as conn:
        assert clusters_match_rebuild(conn) == []
    assert dump(db_url) == before


def test_inspection_works_on_a_readonly_ledger(big_ledger: Ledger, db_url: str) -> None:
    burst(big_ledger, "pay", [0, 10, 20])
    big_ledger.correlate()
    with Ledger(db_url, readonly=True, config=CONFIG, clock=big_ledger.clock) as reader:
        [cluster] = reader.clusters()
        assert reader.cluster(cluster.id).cluster == cluster
        assert reader.timeline().rows[0].clusters == (cluster,)


def test_a_rule_change_needs_rebuild_and_is_remembered(big_ledger: Ledger, db_url: str) -> None:
    burst(big_ledger, "pay", [0, 100, 200, 300])
    first = big_ledger.correlate()
    assert (first.mode, first.window_seconds, first.min_failures, first.min_events) == ("rebuild", 600, 3, 2)
    before = dump(db_url)
    with pytest.raises(ValidationError, match=r"--rebuild required: stored clusters use window=600s, "
                                              r"min_failures=3, min_events=2"):
        big_ledger.correlate(window="1m")
    assert dump(db_url) == before
    changed = big_ledger.correlate(rebuild=True, window="1m", min_failures=2)
    assert (changed.mode, changed.window_seconds, changed.min_failures) == ("rebuild", 60, 2)
    assert changed.removed == 1 and changed.added == 0  # 100 s apart: nothing within a minute
    again = big_ledger.correlate()  # remembered: no parameters needed, and no rebuild
    assert (again.mode, again.window_seconds, again.min_failures) == ("incremental", 60, 2)
    big_ledger.correlate(window=60, min_failures=2, min_events=2)  # the same rule spelt out is fine


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"window": "soon"}, "duration"), ({"window": 0}, "window"), ({"window": "1.5s"}, "whole"),
     ({"min_failures": 1}, "min_failures"), ({"min_events": 0}, "min_events"),
     ({"rebuild": "yes"}, "rebuild")],
)
def test_bad_parameters_write_nothing(
    big_ledger: Ledger, db_url: str, kwargs: dict[str, Any], message: str
) -> None:
    burst(big_ledger, "pay", [0, 10, 20])
    before = dump(db_url)
    with pytest.raises(ValidationError, match=message):
        big_ledger.correlate(**kwargs)
    assert dump(db_url) == before


def test_cluster_notes_survive_rebuilds_and_show_on_overlapping_clusters(big_ledger: Ledger) -> None:
    burst(big_ledger, "pay", [0, 10, 20, 1000, 1010, 1020])
    burst(big_ledger, "mail", [0, 10, 20])
    big_ledger.correlate(window=60)
    early = next(c for c in big_ledger.clusters(event_type="pay") if c.window_start == BASE)
    note = big_ledger.annotate_cluster(early.id, "provider incident")
    assert note.cluster_event_type == "pay" and note.span_start == BASE and note.cluster_id == early.id
    assert note.author  # the operator's name by default
    big_ledger.correlate(rebuild=True, window="30m", min_failures=4)  # another rule: new ids, one big cluster
    [merged] = big_ledger.clusters(event_type="pay")
    assert merged.id != early.id and merged.window_start == BASE
    assert [a.text for a in big_ledger.cluster(merged.id).annotations] == ["provider incident"]
    big_ledger.correlate(rebuild=True, window=60, min_failures=3)
    late = next(c for c in big_ledger.clusters(event_type="pay") if c.window_start > BASE)
    assert big_ledger.cluster(late.id).annotations == ()  # does not overlap the noted span
    [mail] = big_ledger.clusters(event_type="mail")
    assert big_ledger.cluster(mail.id).annotations == ()  # same span, other type
    with pytest.raises(NotFound, match="no cluster"):
        big_ledger.annotate_cluster("c_0000000000000000", "nope")
    with pytest.raises(ValidationError, match="cluster id"):
        big_ledger.annotate_cluster("", "nope")


def test_cluster_detail_lists_members_attempts_and_the_rule(big_ledger: Ledger) -> None:
    a, b = burst(big_ledger, "pay", [0, 10, 20, 30, 40], events=2)
    loner = burst(big_ledger, "pay", [5000], events=1)[0]
    big_ledger.report(loner, False, error="deadlock detected", at=BASE + timedelta(seconds=5001), force=True)
    big_ledger.correlate()
    [cluster] = big_ledger.clusters()
    detail = big_ledger.cluster(cluster.id)
    assert "3 failures within 600s" in detail.rule and "2 distinct events" in detail.rule
    assert {(e.event_id, e.failures) for e in detail.events} == {(a, 3), (b, 2)}
    assert [x.at for x in detail.attempts] == [BASE + timedelta(seconds=s) for s in (0, 10, 20, 30, 40)]
    assert all(x.error == "timeout after 30s" for x in detail.attempts)
    assert [(t.count, t.example) for t in cluster.top_fingerprints] == [(5, "timeout after 30s")]
    short = big_ledger.cluster(cluster.id, attempts_limit=2)
    assert len(short.attempts) == 2 and short.attempts_truncated
    assert big_ledger.clusters_of_event(a) == [cluster]
    assert big_ledger.clusters_of_event(loner) == []
    with pytest.raises(NotFound):
        big_ledger.cluster("c_ffffffffffffffff")
    as_json = detail.as_dict()
    assert as_json["cluster"]["window_start"] == format_time(BASE)


def test_filters_active_since_and_type(big_ledger: Ledger, clock: FakeClock) -> None:
    burst(big_ledger, "pay", [0, 10, 20])
    burst(big_ledger, "mail", [86_400, 86_410, 86_420])
    big_ledger.correlate()
    clock.now = BASE + timedelta(days=1, seconds=20 + 600)  # mail's cluster ended exactly W ago
    assert [c.event_type for c in big_ledger.clusters(active=True)] == ["mail"]
    clock.advance(1)
    assert big_ledger.clusters(active=True) == []
    assert [c.event_type for c in big_ledger.clusters()] == ["mail", "pay"]  # newest first
    assert [c.event_type for c in big_ledger.clusters(since=BASE + timedelta(hours=1))] == ["mail"]
    assert [c.event_type for c in big_ledger.clusters(event_type="pay")] == ["pay"]
    with pytest.raises(ValidationError):
        big_ledger.clusters(since=datetime(2026, 1, 1))  # naive


def test_timeline_counts_every_failure_once(big_ledger: Ledger) -> None:
    burst(big_ledger, "pay", [0, 10, 20, 3600])
    burst(big_ledger, "mail", [1800, 1801, 1802, 7200], events=3)
    big_ledger.correlate()
    timeline = big_ledger.timeline(buckets=8)
    assert timeline.start == BASE and timeline.end == BASE + timedelta(seconds=7200)
    rows = {r.event_type: r for r in timeline.rows}
    assert sum(rows["pay"].counts) == 4 and sum(rows["mail"].counts) == 4 and len(rows["pay"].counts) == 8
    assert rows["pay"].counts[0] == 3 and rows["mail"].counts[-1] == 1
    assert [len(r.clusters) for r in (rows["pay"], rows["mail"])] == [1, 1]
    only = big_ledger.timeline(event_type="mail", buckets=2)
    assert [r.event_type for r in only.rows] == ["mail"] and sum(only.rows[0].counts) == 4
    assert big_ledger.timeline(event_type="nothing").rows == ()


def test_the_verify_check_finds_tampering_and_skips_uncorrelated_types(
    big_ledger: Ledger, db_url: str
) -> None:
    burst(big_ledger, "pay", [0, 10, 20])
    burst(big_ledger, "mail", [0, 10, 20])
    big_ledger.correlate()
    burst(big_ledger, "mail", [30])  # not correlated yet: mail's cluster is stale, not wrong
    with big_ledger.store.read() as conn:
        assert clusters_match_rebuild(conn) == []
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # derived data may be changed (or damaged) without triggers refusing
        conn.execute(sa.text("UPDATE failure_cluster SET failure_count = 7 WHERE event_type = 'pay'"))
    engine.dispose()
    with big_ledger.store.read() as conn:
        problems = clusters_match_rebuild(conn)
    assert len(problems) == 1 and "failure_count 7" in problems[0] and "--rebuild" in problems[0]
    assert not big_ledger.verify().ok
    big_ledger.correlate(rebuild=True)
    assert big_ledger.verify().ok
    # The remembered total (what reports show instead of counting the table) is checked too.
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE correlation_state SET cluster_count = cluster_count + 5"))
    engine.dispose()
    with big_ledger.store.read() as conn:
        [problem] = clusters_match_rebuild(conn)
    assert "correlation_state counts 7 clusters, failure_cluster holds 2" in problem
    assert big_ledger.correlate(rebuild=True).clusters_total == 2
    assert big_ledger.verify().ok


def test_correlating_while_failures_are_written_ends_equal_to_a_rebuild(
    db_url: str, clock: FakeClock
) -> None:
    """Writers and correlate runs interleave (on PostgreSQL attempts may commit out of id order); once the
    writers stop, one more correlate must leave exactly what a rebuild leaves."""
    rng = random.Random(5)
    plans = [[(f"w{w}.pay", rng.randint(0, 3000)) for _ in range(60)] for w in range(3)]
    with Ledger(db_url, config=CONFIG, clock=clock) as setup:
        setup.correlate(window=60)
    errors: list[BaseException] = []

    def writer(failures: list[tuple[str, int]]) -> None:
        try:
            with Ledger(db_url, config=CONFIG, clock=clock) as ledger:
                ids = [ledger.detect(failures[0][0], at=BASE - timedelta(days=1)).id for _ in range(4)]
                last = dict.fromkeys(ids, -1)
                for k, (_, second) in enumerate(failures):
                    event = ids[k % 4]
                    last[event] = max(last[event] + 1, second)  # each event's attempts in time order
                    ledger.report(event, False, error="timeout after 30s",
                                  at=BASE + timedelta(seconds=last[event]), force=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in plans]
    for thread in threads:
        thread.start()
    with Ledger(db_url, config=CONFIG, clock=clock) as ledger:
        while any(t.is_alive() for t in threads):
            ledger.correlate()
        for thread in threads:
            thread.join()
        assert not errors
        ledger.correlate()
        types = {p[0][0] for p in plans}
        incremental = stored_rows(ledger, types)
        assert incremental  # the plan makes clusters
        ledger.correlate(rebuild=True)
        assert stored_rows(ledger, types) == incremental


def test_an_attempt_committed_after_a_higher_id_is_not_missed(db_url: str, clock: FakeClock) -> None:
    """Attempt ids are handed out before commit: a failure with a lower id can commit after one with a
    higher id. A correlate running in between must not move its watermark past the uncommitted one."""
    with Ledger(db_url, config=CONFIG, clock=clock) as ledger:
        a, b, c = (ledger.detect("pay", at=BASE - timedelta(days=1)).id for _ in range(3))
        ledger.report(a, False, error="boom", at=BASE, force=True)
        ledger.correlate(window=60)
        holding, release = threading.Event(), threading.Event()

        def slow_writer() -> None:  # inserts a failure (taking an id) and commits only when told
            engine = sa.create_engine(db_url)
            with engine.begin() as conn:
                conn.execute(sa.insert(metadata.tables["attempt"]).values(
                    event_id=b, event_type="pay", number=1, at_us=to_us(BASE) + 10_000_000, outcome="failed",
                    error="boom", fingerprint=fingerprint("boom"), forced=False, actor="test"))
                holding.set()
                release.wait(30)
            engine.dispose()

        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert holding.wait(30)
        if ledger.store.dialect == "postgresql":  # SQLite's single writer lock already orders them
            ledger.report(c, False, error="boom", at=BASE + timedelta(seconds=20), force=True)
        correlating = threading.Thread(target=ledger.correlate)
        correlating.start()
        correlating.join(1.0)  # it must wait for the open insert (or, if it does not, run ahead now)
        release.set()
        writer.join()
        correlating.join()
        if ledger.store.dialect != "postgresql":
            ledger.report(c, False, error="boom", at=BASE + timedelta(seconds=20), force=True)
        ledger.correlate()
        [cluster] = ledger.clusters()
        assert (cluster.failure_count, cluster.event_count) == (3, 3)


@DB_SETTINGS
@given(history=histories(), data=st.data())
def test_the_walk_and_page_queries_return_what_the_algorithm_expects(
    big_ledger: Ledger, history: list[Fail], data: st.DataObject
) -> None:
    """The SQL behind the incremental path, against the same lists computed in Python."""
    record(big_ledger, [("import", (key, failures)) for key, failures in by_event(history).items()])
    event_type = history[0].event_type
    mine = sorted(f.at_us for f in history if f.event_type == event_type)
    changed = data.draw(st.sampled_from(mine))
    n = data.draw(st.integers(2, 5))
    page = data.draw(st.integers(n, 12))
    with big_ledger.store.read() as conn:
        sql = Sql(conn)
        for left in (True, False):
            behind, ahead = reads.walk(sql, event_type, changed, left=left, n=n)
            assert (behind, list(ahead)) == walk_inputs(mine, changed, left=left, n=n)
        [(below, above)] = reads.neighbourhoods(sql, [(event_type, changed, page, page + 1)])
        assert [f[0] for f in below] == sorted((t for t in mine if t < changed), reverse=True)[:page]
        assert [f[0] for f in above] == [t for t in mine if t >= changed][: page + 1]
        lo, hi = data.draw(st.sampled_from([None, *mine])), data.draw(st.sampled_from([None, *mine]))
        streamed = [(t, p) for times, _, prints in reads.stream(sql, event_type, lo, hi)
                    for t, p in zip(times, prints, strict=True)]
        inside = [t for t in mine if (lo is None or t >= lo) and (hi is None or t <= hi)]
        assert [t for t, _ in streamed] == inside
        # Each failure comes with its own fingerprint (the index holds it): compare as multisets per time.
        assert Counter(streamed) == Counter(
            (f.at_us, fingerprint(f.message)) for f in history
            if f.event_type == event_type and (lo is None or f.at_us >= lo) and (hi is None or f.at_us <= hi)
        )
        sql.close()
