"""Incidents (SPEC 13) against a slow reference written literally from the spec, on both backends.

The reference links every pair of clusters (themselves from the literal SPEC 7 reference) and merges linked
sets until nothing changes. Hypothesis examples share one database per test (as in test_correlation_db);
each example lies in its own stretch of time, far more than W from the others', so no example's clusters
can link to another's.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from hashlib import blake2b
from typing import Any

import pytest
import sqlalchemy as sa
from cli_support import invoke, run_main
from conftest import FakeClock
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_correlation_db import (
    BASE,
    CONFIG,
    DB_SETTINGS,
    MESSAGES,
    Fail,
    burst,
    by_event,
    dump,
    plan,
    record,
)
from test_correlation_rule import reference
from test_schema import migrate

from failure_aware import Ledger, NotFound, ValidationError
from failure_aware.correlation import Rule, cluster_id, incident_local, incidents_match_rebuild
from failure_aware.correlation.linking import Member, components
from failure_aware.domain.fingerprint import fingerprint
from failure_aware.domain.timeutil import to_us

S = 1_000_000
local_update = incident_local.update
_stretches = itertools.count(1)


@pytest.fixture
def big_ledger(db_url: str, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger whose retry policy never kills an event; its clock is ``clock``, a month after BASE."""
    clock.now = BASE + timedelta(days=30)
    with Ledger(db_url, config=CONFIG, clock=clock) as opened:
        yield opened


# -- the reference ---------------------------------------------------------------------------------------
def reference_incidents(history: Sequence[Fail], rule: Rule) -> dict[str, tuple[Any, ...]]:
    """SPEC 13, sentence by sentence, over the clusters of the SPEC 7 reference."""
    clusters = []  # (id, type, start, end, failures inside, top fingerprints)
    for kind in sorted({f.event_type for f in history}):
        mine = [f for f in history if f.event_type == kind]
        for span in reference([(f.at_us, f.event) for f in mine], rule):
            inside = [f for f in mine if span.start_us <= f.at_us <= span.end_us]
            counts = Counter(fingerprint(f.message) for f in inside)
            tops = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))[:5]
            clusters.append((cluster_id(kind, span.start_us, rule), kind, span.start_us, span.end_us, inside,
                             tops))
    # "Two clusters of different event types are linked when their window_start times are at most W apart"
    def linked(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        return a[1] != b[1] and abs(a[2] - b[2]) <= rule.window_us

    # "An incident is a connected set of linked clusters (links chain)": merge linked sets until none left.
    sets = [[c] for c in clusters]
    merged = True
    while merged:
        merged = False
        for x, y in itertools.combinations(range(len(sets)), 2):
            if any(linked(a, b) for a in sets[x] for b in sets[y]):
                sets[x] += sets.pop(y)
                merged = True
                break
    found = {}
    for members in (s for s in sets if len(s) > 1):
        members.sort(key=lambda c: (c[2], c[1]))  # "ties of window_start are broken by event type name"
        iid = "i_" + blake2b(members[0][0].encode(), digest_size=8).hexdigest()
        failures = [f for c in members for f in c[4]]
        holders: Counter[str] = Counter()
        counted: Counter[str] = Counter()
        for c in members:
            for fp, n in c[5]:
                holders[fp] += 1
                counted[fp] += n
        shared = sorted(((fp, holders[fp], counted[fp]) for fp in holders if holders[fp] > 1),
                        key=lambda s: (-s[1], -s[2], s[0]))
        found[iid] = (
            min(c[2] for c in members), max(c[3] for c in members), len(members), len(failures),
            len({(f.event_type, f.event) for f in failures}), tuple(sorted({c[1] for c in members})),
            tuple(c[0] for c in members), tuple(shared),
        )
    return found


def stored_incidents(ledger: Ledger, types: set[str]) -> dict[str, tuple[Any, ...]]:
    return {
        i.id: (to_us(i.start), to_us(i.end), i.cluster_count, i.failure_count, i.event_count, i.event_types,
               i.cluster_ids, tuple((s.fingerprint, s.clusters, s.failures) for s in i.shared_fingerprints))
        for i in ledger.incidents() if set(i.event_types) <= types
    }


# -- the pure sweep against pairwise links -----------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    starts=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 60)), max_size=25, unique=True),
    window=st.integers(0, 15),
)
def test_the_sweep_finds_the_connected_sets_of_pairwise_links(
    starts: list[tuple[str, int]], window: int
) -> None:
    members = [Member(f"c{k}", kind, start, start, 1, 1) for k, (kind, start) in enumerate(starts)]
    parent = {m.id: m.id for m in members}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in itertools.combinations(members, 2):
        if a.event_type != b.event_type and abs(a.start_us - b.start_us) <= window:
            parent[root(a.id)] = root(b.id)
    groups: dict[str, set[str]] = {}
    for m in members:
        groups.setdefault(root(m.id), set()).add(m.id)
    expected = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    shuffled = list(members)
    random.Random(len(starts)).shuffle(shuffled)
    assert sorted(sorted(m.id for m in g) for g in components(shuffled, window)) == expected


# -- through the Ledger, on both backends -------------------------------------------------------------------
rules = st.builds(Rule, window_seconds=st.integers(1, 20), min_failures=st.integers(2, 3),
                  min_events=st.integers(1, 2))


@st.composite
def histories(draw: st.DrawFn) -> list[Fail]:
    """Up to four types failing in bursts around the same seconds (so their clusters link), in a stretch
    of time of their own."""
    stretch = next(_stretches)
    origin = to_us(BASE) + stretch * 3600 * S
    types = [f"s{stretch}.{name}" for name in draw(st.lists(st.sampled_from("abcd"), min_size=2, max_size=4,
                                                              unique=True))]
    # When things break together: bursts a little apart, so links chain and a type can burst twice.
    gaps = draw(st.lists(st.integers(5, 40), min_size=0, max_size=3))
    centers = list(itertools.accumulate(gaps, initial=draw(st.integers(0, 20))))
    raw = draw(st.lists(
        st.tuples(st.sampled_from(types), st.integers(0, 4), st.sampled_from(centers), st.integers(0, 5),
                  st.sampled_from([0, 0, 1, 250_000]), st.sampled_from(MESSAGES)),
        min_size=6, max_size=45,
    ))
    return [Fail(t, e, origin + (c + d) * S + micro, m) for t, e, c, d, micro, m in raw]


@DB_SETTINGS
@given(history=histories(), rule=rules, batches=st.integers(1, 4), seed=st.integers(0, 2**32))
def test_incidents_match_the_reference_and_a_rebuild(
    big_ledger: Ledger, history: list[Fail], rule: Rule, batches: int, seed: int
) -> None:
    """Recorded in random batches (late failures included) with an incremental correlate after each."""
    big_ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
    types = {f.event_type for f in history}
    for step in plan(history, batches, random.Random(seed)):
        record(big_ledger, step)
        assert big_ledger.correlate().mode == "incremental"
    incrementally = stored_incidents(big_ledger, types)
    event(f"incidents: {min(len(incrementally), 2)}, a type with two clusters in one: "
          f"{any(v[2] > len(v[5]) for v in incrementally.values())}")
    assert incrementally == reference_incidents(history, rule)
    rebuilt = big_ledger.correlate(rebuild=True)
    assert (rebuilt.incidents_added, rebuilt.incidents_removed, rebuilt.incidents_changed) == (0, 0, 0)
    assert stored_incidents(big_ledger, types) == incrementally
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []


# -- examples ------------------------------------------------------------------------------------------------
def outage(ledger: Ledger) -> None:
    """pay and mail fail together (one incident); pay again an hour later, alone (no incident)."""
    burst(ledger, "pay", [0, 10, 20], message="gateway 503 from edge-1")
    burst(ledger, "mail", [300, 310, 320], message="gateway 503 from edge-2")
    burst(ledger, "crm", [900, 905, 910], message="deadlock detected")  # links to mail (600 s): a chain
    burst(ledger, "pay", [3600, 3610, 3620])


def test_an_incident_chains_types_and_names_the_shared_fingerprint(big_ledger: Ledger) -> None:
    outage(big_ledger)
    report = big_ledger.correlate()
    assert report.incidents_added == 1
    [incident] = big_ledger.incidents()
    assert incident.event_types == ("crm", "mail", "pay") and incident.cluster_count == 3
    assert (incident.start, incident.end) == (BASE, BASE + timedelta(seconds=910))
    assert (incident.failure_count, incident.event_count) == (9, 6)
    [shared] = incident.shared_fingerprints
    gateway = fingerprint("gateway 503 from edge-1")
    assert (shared.fingerprint, shared.clusters, shared.failures) == (gateway, 2, 6)
    earliest = big_ledger.clusters(event_type="pay")[-1]
    assert incident.cluster_ids[0] == earliest.id
    assert incident.id == "i_" + blake2b(earliest.id.encode(), digest_size=8).hexdigest()
    detail = big_ledger.incident(incident.id)
    assert [c.event_type for c in detail.clusters] == ["pay", "mail", "crm"]
    assert detail.incident.shared_fingerprints[0].example == "gateway 503 from edge-1"
    pay_event = big_ledger.clusters_of_event(1)[0]
    assert pay_event.id == earliest.id and big_ledger.show(1).incident_ids == (incident.id,)
    assert big_ledger.show(7).incident_ids == ()  # event 7 failed in pay's later burst: no incident
    assert [i.id for i in big_ledger.incidents(event_type="crm")] == [incident.id]
    assert big_ledger.incidents(event_type="nothing") == []
    assert big_ledger.incidents(since=BASE + timedelta(hours=2)) == []
    with pytest.raises(NotFound, match="no incident"):
        big_ledger.incident("i_0000000000000000")
    with pytest.raises(ValidationError, match="incident id"):
        big_ledger.incident("")


def test_a_late_failure_that_removes_a_link_splits_nothing_wrongly(big_ledger: Ledger) -> None:
    """A late failure that moves a cluster's start out of W removes the incident, incrementally."""
    burst(big_ledger, "pay", [0, 10, 20])
    burst(big_ledger, "mail", [590, 600, 610])
    big_ledger.correlate()
    assert len(big_ledger.incidents()) == 1
    burst(big_ledger, "mail", [580, 585])  # mail's cluster now starts at 580: still within 600 s of pay
    assert big_ledger.correlate().incidents_changed == 1
    burst(big_ledger, "pay", [-500, -450])  # pay's cluster now starts at -500: 1080 s from mail's
    report = big_ledger.correlate()
    assert report.incidents_removed == 1 and big_ledger.incidents() == []
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []


def test_verify_finds_damaged_incidents(big_ledger: Ledger, db_url: str) -> None:
    outage(big_ledger)
    big_ledger.correlate()
    assert big_ledger.verify().ok
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # derived data: no trigger refuses this
        conn.execute(sa.text("UPDATE incident SET failure_count = 99"))
        conn.execute(sa.text("DELETE FROM incident_cluster WHERE cluster_id IN "
                             "(SELECT min(cluster_id) FROM incident_cluster)"))
    engine.dispose()
    problems = big_ledger.verify().problems
    assert any("failure_count 99" in p for p in problems)
    assert any("is not recorded as its member" in p for p in problems)
    big_ledger.correlate(rebuild=True)
    assert big_ledger.verify().ok


def test_health_names_an_active_incident_and_reading_writes_nothing(
    big_ledger: Ledger, db_url: str, clock: FakeClock
) -> None:
    outage(big_ledger)
    big_ledger.correlate()
    before = dump(db_url)
    clock.now = BASE + timedelta(seconds=910 + 60)
    report = big_ledger.health()
    [reason] = [r for r in report.reasons if r.rule == "active_incidents"]
    assert reason.verdict == "DEGRADED" and "crm, mail, pay" in reason.message
    assert [i.id for i in report.active_incidents] == [i.id for i in big_ledger.incidents(active=True)]
    assert big_ledger.health(event_type="pay").active_incidents  # pay is in it
    big_ledger.incident(big_ledger.incidents()[0].id)
    big_ledger.show(1)
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []
    assert dump(db_url) == before
    clock.now = BASE + timedelta(seconds=910 + 601)
    assert not big_ledger.health().active_incidents
    assert big_ledger.incidents(active=True) == []


def test_the_cli_lists_and_shows_incidents_and_only_reads(
    big_ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outage(big_ledger)
    big_ledger.correlate()
    before = dump(db_url)
    listed = invoke(db_url, "incidents", "--json")
    assert listed.exit_code == 0, listed.output
    [found] = json.loads(listed.stdout)
    assert found["event_types"] == ["crm", "mail", "pay"] and found["start"] == "2026-01-01T00:00:00Z"
    assert json.loads(invoke(db_url, "incidents", "--type", "crm", "--json").stdout)[0]["id"] == found["id"]
    assert json.loads(invoke(db_url, "incidents", "--active", "--json").stdout) == []  # the clock is now
    shown = invoke(db_url, "incidents", "show", found["id"], "--json")
    detail = json.loads(shown.stdout)
    assert [c["event_type"] for c in detail["clusters"]] == ["pay", "mail", "crm"]
    assert detail["incident"]["shared_fingerprints"][0]["example"] == "gateway 503 from edge-1"
    text = invoke(db_url, "incidents", "show", found["id"], env={"COLUMNS": "200"}).stdout
    assert found["id"] in text and "gateway 503 from edge-1" in text
    assert found["id"] in invoke(db_url, "incidents", env={"COLUMNS": "200"}).stdout
    assert f"incidents: {found['id']}" in invoke(db_url, "show", "1").stdout
    missing = run_main(capsys, "--db", db_url, "incidents", "show", "i_0000000000000000")
    assert missing.code == 1 and "no incident" in missing.err and "Traceback" not in missing.err
    assert dump(db_url) == before


def test_a_v3_database_upgrades_and_its_next_correlate_computes_the_incidents(
    db_url: str, clock: FakeClock
) -> None:
    """Schema v7 clears the clusters of an older database (derived data): the next correlate is a rebuild
    and computes clusters and incidents together."""
    migrate(db_url, upto=3)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for event_id, kind in enumerate(["pay", "pay", "mail", "mail"], start=1):
            conn.execute(sa.text(
                "INSERT INTO event_detected (id, event_type, key, payload, detected_at_us, recorded_at_us) "
                "VALUES (:id, :kind, :key, '{}', 0, 0)"),
                {"id": event_id, "kind": kind, "key": f"k{event_id}"})
            for number in (1, 2):
                conn.execute(sa.text(
                    "INSERT INTO attempt (event_id, event_type, number, at_us, outcome, error, fingerprint, "
                    "forced, actor) VALUES (:id, :kind, :n, :at, 'failed', 'boom', :fp, false, 'test')"),
                    {"id": event_id, "kind": kind, "n": number, "fp": fingerprint("boom"),
                     "at": to_us(BASE) + (event_id * 10 + number) * S})
        conn.execute(sa.text(
            "INSERT INTO failure_cluster VALUES ('c_old', 'pay', 0, 1, 3, 2, '[]', 600, 3, 2)"))
        conn.execute(sa.text("INSERT INTO correlation_state VALUES (1, 600000000, 3, 2, 8, 0, 1)"))
    engine.dispose()
    with Ledger(db_url, upgrade=True, config=CONFIG, clock=clock) as upgraded:
        assert upgraded.clusters() == [] and upgraded.incidents() == []
        report = upgraded.correlate()
        assert report.mode == "rebuild" and report.incidents_added == 1
        [incident] = upgraded.incidents()
        assert incident.event_types == ("mail", "pay") and incident.failure_count == 8
        with upgraded.store.read() as conn:
            assert incidents_match_rebuild(conn) == []


def test_an_event_failing_in_two_clusters_of_its_type_counts_once(big_ledger: Ledger) -> None:
    """pay bursts twice (900 s apart: two clusters), mail in between links both: one incident in which
    pay's events are counted once though they fail in both clusters; later changes reuse or recount."""
    pay = burst(big_ledger, "pay", [0, 10, 20, 900, 910, 920])  # the same two events in both clusters
    burst(big_ledger, "mail", [450, 460, 470])
    big_ledger.correlate()
    [incident] = big_ledger.incidents()
    assert (incident.cluster_count, incident.failure_count, incident.event_count) == (3, 9, 4)
    burst(big_ledger, "crm", [1400, 1410, 1420])  # links to pay's second cluster: pay's events are reused
    assert big_ledger.correlate().incidents_changed == 1
    [incident] = big_ledger.incidents()
    assert (incident.cluster_count, incident.event_count) == (4, 6)
    # A third pay cluster joins through crm: only its events are read, and pay[0], which failed in the
    # first two as well, is found there by its attempts and not counted again.
    fresh = big_ledger.detect("pay", at=BASE).id
    for second, who in ((1800, pay[0]), (1810, fresh), (1820, fresh)):
        big_ledger.report(who, False, error="timeout after 30s", at=BASE + timedelta(seconds=second),
                          force=True)
    big_ledger.correlate()
    [incident] = big_ledger.incidents()
    assert (incident.cluster_count, incident.failure_count, incident.event_count) == (5, 15, 7)
    big_ledger.report(pay[0], False, error="timeout after 30s", at=BASE + timedelta(seconds=1825), force=True)
    third = big_ledger.detect("pay", at=BASE).id  # a new pay event in the first cluster: pay recounted
    big_ledger.report(third, False, error="timeout after 30s", at=BASE + timedelta(seconds=15), force=True)
    big_ledger.correlate()
    [incident] = big_ledger.incidents()
    assert (incident.failure_count, incident.event_count) == (17, 8)
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []
    rebuilt = big_ledger.correlate(rebuild=True)
    assert (rebuilt.incidents_added, rebuilt.incidents_removed, rebuilt.incidents_changed) == (0, 0, 0)


# -- the local update (incident_local): incidents that grow, merge and split, far from the rest ----------
long_rules = st.builds(Rule, window_seconds=st.integers(3, 12), min_failures=st.integers(2, 3),
                       min_events=st.integers(1, 2))


@st.composite
def long_histories(draw: st.DrawFn) -> list[Fail]:
    """Like ``histories``, with more bursts and more types, so incidents chain far beyond W: a batch of
    late failures touches part of a long incident (the rest lies outside what an incremental run reads),
    merges two or splits one."""
    stretch = next(_stretches)
    origin = to_us(BASE) + stretch * 3600 * S
    types = [f"s{stretch}.{name}" for name in draw(st.lists(st.sampled_from("abcde"), min_size=2, max_size=5,
                                                              unique=True))]
    gaps = draw(st.lists(st.integers(2, 45), min_size=3, max_size=12))
    centers = list(itertools.accumulate(gaps, initial=draw(st.integers(0, 20))))
    raw = draw(st.lists(
        st.tuples(st.sampled_from(types), st.integers(0, 6), st.sampled_from(centers), st.integers(0, 8),
                  st.sampled_from([0, 0, 1, 250_000]), st.sampled_from(MESSAGES)),
        min_size=10, max_size=90,
    ))
    return [Fail(t, e, origin + (c + d) * S + micro, m) for t, e, c, d, micro, m in raw]


@DB_SETTINGS
@given(history=long_histories(), rule=long_rules, batches=st.integers(2, 5), seed=st.integers(0, 2**32))
def test_incidents_updated_locally_match_the_reference_and_a_rebuild(
    big_ledger: Ledger, history: list[Fail], rule: Rule, batches: int, seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Most of a history first, then the rest in late batches, an incremental correlate after each: the
    local update (or its fallback, recomputing the touched incidents whole) must leave the reference."""
    outcomes: list[incident_local.Found | None] = []

    def noted(*args: Any) -> Any:
        outcomes.append(local_update(*args))
        return outcomes[-1]

    monkeypatch.setattr(incident_local, "update", noted)
    big_ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
    rng = random.Random(seed)
    steps: list[list[tuple[str, Any]]] = [[] for _ in range(batches)]
    for key, failures in by_event(history).items():  # most events first, the others late, in later batches
        steps[0 if rng.random() < 0.85 else rng.randrange(1, batches)].append(("import", (key, failures)))
    for step in steps:
        record(big_ledger, step)
        assert big_ledger.correlate().mode == "incremental"
    types = {f.event_type for f in history}
    incrementally = stored_incidents(big_ledger, types)
    event(f"local updates: {any(outcomes)}; recomputed whole: {not all(outcomes)}")
    event(f"pieces read whole (a merge or split): {any(f and f.read_whole for f in outcomes)}; "
          f"renamed: {any(f and f.renamed for f in outcomes)}")
    assert incrementally == reference_incidents(history, rule)
    rebuilt = big_ledger.correlate(rebuild=True)
    assert (rebuilt.incidents_added, rebuilt.incidents_removed, rebuilt.incidents_changed) == (0, 0, 0)
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []


def test_long_incidents_merge_split_and_rename_locally(
    big_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chains of 10 and 14 clusters (far longer than the stretch a run reads around a change): a late
    burst between them merges them, then late failures that move a cluster's start split the result.
    Each time the local update reads the smaller side whole and computes the larger from its row; the
    merged incident takes the earlier chain's id, so the larger one's memberships are renamed."""
    outcomes: list[incident_local.Found | None] = []

    def noted(*args: Any) -> Any:
        outcomes.append(local_update(*args))
        return outcomes[-1]

    monkeypatch.setattr(incident_local, "update", noted)

    def chain(origin: int, clusters: int) -> list[int]:  # pay and mail in turn, every 500 s: each linked
        starts = [origin + 500 * k for k in range(clusters)]
        for k, start in enumerate(starts):
            burst(big_ledger, ("pay", "mail")[k % 2], [start, start + 10, start + 20],
                  message="gateway 503 from edge-1")
        return starts

    first = chain(0, 10)
    chain(first[-1] + 1100, 14)
    big_ledger.correlate()
    assert len(big_ledger.incidents()) == 2
    burst(big_ledger, "crm", [first[-1] + 550, first[-1] + 560, first[-1] + 570])  # W from both chains
    report = big_ledger.correlate()
    assert (report.incidents_removed, len(big_ledger.incidents())) == (1, 1)
    assert outcomes[-1] is not None and outcomes[-1].read_whole >= 5 and outcomes[-1].renamed
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []
    # Two mail failures at 3,000 and 3,250 s join mail's clusters at 2,500 and 3,500 s into one starting at
    # 2,500 s: no longer linked to pay's at 4,000 s, and nothing else bridges 3,000-4,000 s: the merged
    # incident splits there (7 clusters before, 17 after).
    burst(big_ledger, "mail", [first[7] - 500, first[7] - 250])
    report = big_ledger.correlate()
    assert outcomes[-1] is not None and outcomes[-1].read_whole >= 5
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []
    assert sorted(i.cluster_count for i in big_ledger.incidents()) == [7, 17]


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[Fail], list[Fail], Rule]:
    """A long chain of bursts (each linked to the next: starts 0.4-1.0 W apart, types in turn) recorded
    first, then a few late failures anywhere along it: a burst of a new type in a gap (a merge), failures
    just before a burst (its start moves: a split), or more of a burst (a cluster grows)."""
    stretch = next(_stretches)
    origin = to_us(BASE) + stretch * 3600 * S
    window = draw(st.integers(6, 12))
    rule = Rule(window_seconds=window, min_failures=3, min_events=draw(st.integers(1, 2)))
    kinds = [f"s{stretch}.{name}" for name in "abcd"]
    steps = draw(st.lists(st.floats(0.4, 1.0), min_size=10, max_size=24))
    starts = list(itertools.accumulate((s * window for s in steps), initial=0.0))
    base, late = [], []
    event_ids = itertools.count()
    for k, start in enumerate(starts):
        kind = kinds[k % 2] if draw(st.booleans()) else draw(st.sampled_from(kinds[:3]))
        first, second = next(event_ids), next(event_ids)
        base += [Fail(kind, e, origin + int((start + d) * S), MESSAGES[k % 3]) for e, d in
                 ((first, 0), (second, 0.5), (first, 1.0))]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.floats(-window, starts[-1] + window))
        kind = draw(st.sampled_from(kinds))
        first = next(event_ids)
        late += [Fail(kind, first, origin + int((at + d) * S), draw(st.sampled_from(MESSAGES)))
                 for d in draw(st.lists(st.floats(0, 2 * window), min_size=1, max_size=3))]
    return base, late, rule


@DB_SETTINGS
@given(chain=chains())
def test_late_failures_along_a_long_chain_match_the_reference(
    big_ledger: Ledger, chain: tuple[list[Fail], list[Fail], Rule], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merges, splits and growth of long incidents by late failures, incremental against the reference."""
    base, late, rule = chain
    outcomes: list[incident_local.Found | None] = []

    def noted(*args: Any) -> Any:
        outcomes.append(local_update(*args))
        return outcomes[-1]

    monkeypatch.setattr(incident_local, "update", noted)
    big_ledger.correlate(rebuild=True, window=rule.window_seconds, min_failures=rule.min_failures,
                         min_events=rule.min_events)
    record(big_ledger, [("import", (key, f)) for key, f in by_event(base).items()])
    big_ledger.correlate()
    record(big_ledger, [("import", (key, f)) for key, f in by_event(late).items()])
    big_ledger.correlate()
    event(f"local: {any(outcomes)}; whole: {not all(outcomes)}")
    event(f"read whole: {any(f and f.read_whole for f in outcomes)}; "
          f"renamed: {any(f and f.renamed for f in outcomes)}")
    history = base + late
    types = {f.event_type for f in history}
    assert stored_incidents(big_ledger, types) == reference_incidents(history, rule)
    with big_ledger.store.read() as conn:
        assert incidents_match_rebuild(conn) == []
