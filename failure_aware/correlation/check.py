"""``clusters_match_rebuild`` and ``incidents_match_rebuild``: the correlation checks of ``verify``
(SPEC 9, 13). Read only.

It recomputes what ``correlate --rebuild`` would store, type by type, streaming as the rebuild does but
counting fingerprints in SQL, and compares it with ``failure_cluster``. Event types with failures
recorded after the last ``correlate`` are skipped: their clusters are stale by design until the next
explicit run (SPEC 7), not inconsistent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from failure_aware.correlation import engine, failures, incident_rows, incidents, stored
from failure_aware.correlation.rule import ClusterScanner, Rule
from failure_aware.correlation.sql import Sql
from failure_aware.domain.progress import Progress
from failure_aware.domain.timeutil import format_time, from_us
from failure_aware.storage.tables import attempt, failure_cluster

_FIX = "run: failure-aware correlate --rebuild"


def clusters_match_rebuild(
    conn: Connection, *, on_progress: Progress | None = None
) -> list[str]:
    """Differences between the stored clusters and a rebuild with the remembered rule (empty: they match).

    ``on_progress("clusters", failures read, total)``: the total from the attempt counters."""
    state = stored.load_state(conn)
    if state is None:
        total = stored.count(conn)
        return [f"failure_cluster holds {total} clusters but correlate never ran; {_FIX}"] if total else []
    problems = _wrong_rule(conn, state.rule)
    total = stored.count(conn)
    if total != state.cluster_count:
        problems.append(f"correlation_state counts {state.cluster_count} clusters, failure_cluster holds "
                        f"{total}; {_FIX}")
    pending = set(
        conn.execute(
            select(attempt.c.event_type).distinct()
            .where(attempt.c.id > state.last_attempt_id, attempt.c.outcome.in_(("failed", "abandoned")))
        ).scalars()
    )
    checked = set(pending)
    engine.tune(conn)
    sql = Sql(conn)
    progress = engine.FailureProgress(conn, on_progress, "clusters")
    for event_type in list(failures.failing_types(sql)):
        checked.add(event_type)
        if event_type not in pending:
            problems.extend(_compare_type(sql, event_type, state.rule, progress))
    sql.close()
    for event_type in sorted(set(stored.stored_types(conn)) - checked):
        problems.append(f"failure_cluster has clusters of {event_type!r}, which has no failures; {_FIX}")
    return problems


def _wrong_rule(conn: Connection, rule: Rule) -> list[str]:
    c = failure_cluster.c
    wrong = conn.execute(
        select(c.id).where(
            (c.window_seconds != rule.window_seconds) | (c.min_failures != rule.min_failures)
            | (c.min_events != rule.min_events)
        ).limit(20)
    ).scalars().all()
    return [f"cluster {cid} was found with another rule than the remembered {rule.describe()}; {_FIX}"
            for cid in wrong]


def _compare_type(sql: Sql, event_type: str, rule: Rule, progress: engine.FailureProgress) -> list[str]:
    scanner = ClusterScanner(rule)
    spans = []
    for times, events, _ in failures.stream(sql, event_type, exclusive=True):  # read to the end first
        spans.extend(scanner.feed(times, events))
        progress.advance(len(times))
    spans.extend(scanner.finish())
    # Fingerprints counted in SQL, not by the scanner as correlate does: two independent ways must agree.
    counts = failures.fingerprint_counts(sql, event_type, [(s.start_us, s.end_us) for s in spans])
    spans = [replace(span, fingerprints=c) for span, c in zip(spans, counts, strict=True)]
    expected: dict[str, dict[str, Any]] = {
        built[0]: dict(zip(stored.COLUMNS, built, strict=True))
        for built in stored.cluster_rows(event_type, rule, spans)
    }
    problems = []
    c = failure_cluster.c
    rows = sql.conn.execute(
        select(failure_cluster).where(c.event_type == event_type).order_by(c.window_start_us)
    )
    for row in rows:
        want = expected.pop(row.id, None)
        where = f"cluster {row.id} ({event_type}, from {format_time(from_us(row.window_start_us))})"
        if want is None:
            problems.append(f"{where} is stored but a rebuild does not find it; {_FIX}")
            continue
        for name in ("window_start_us", "window_end_us", "failure_count", "event_count", "top_fingerprints"):
            have = getattr(row, name)
            if have != want[name]:
                problems.append(f"{where}: stored {name} {have!r}, a rebuild gives {want[name]!r}; {_FIX}")
    for cid, missing in expected.items():
        start = format_time(from_us(missing["window_start_us"]))
        problems.append(f"cluster {cid} ({event_type}, from {start}) is missing; {_FIX}")
    return problems


def incidents_match_rebuild(conn: Connection) -> list[str]:
    """Differences between the stored incidents and those a rebuild computes from the stored clusters
    (empty: they match). Incidents are written with the clusters in one ``correlate`` transaction, so
    unlike clusters nothing is stale by design: any difference is damage."""
    state = stored.load_state(conn)
    sql = Sql(conn)
    try:
        have = incident_rows.signatures(sql, None)
        members = incident_rows.all_membership(sql)
        if state is None:
            return ([f"incident holds {len(have)} incidents but correlate never ran; {_FIX}"]
                    if have or members else [])
        built = incidents.compute(sql, incident_rows.all_clusters(sql), state.rule)
    finally:
        sql.close()
    problems = []
    for found in built:
        row = incident_rows.incident_row(found, state.rule.window_seconds)
        before = have.pop(found.id, None)
        where = f"incident {found.id} (from {format_time(from_us(found.start_us))})"
        if before is None:
            problems.append(f"{where} is missing; {_FIX}")
            continue
        for name, stored_value, wanted in zip(incident_rows.COLUMNS[1:], before, row[1:], strict=True):
            if stored_value != wanted:
                problems.append(
                    f"{where}: stored {name} {stored_value!r}, a rebuild gives {wanted!r}; {_FIX}")
        for member in found.members:
            if members.pop(member.id, None) != found.id:
                problems.append(f"{where}: cluster {member.id} is not recorded as its member; {_FIX}")
    problems.extend(f"incident {iid} is stored but a rebuild does not find it; {_FIX}"
                    for iid in sorted(have))
    problems.extend(f"cluster {cid} is recorded in incident {iid}, which a rebuild does not give; {_FIX}"
                    for cid, iid in sorted(members.items()))
    return problems
