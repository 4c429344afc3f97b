"""Health diagnostics (SPEC section 6): one test per rule, thresholds, --type, figures, the CLI.

Every state is built through the Ledger API with the fake clock (default rules unless a test says
otherwise: overdue after 15 min, critical overdue 1 h, failure rate 10 % / 50 % over >= 10 attempts in the
last hour, deaths within 24 h).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_support import REPO_ROOT, dump, invoke, python_m, run_main, run_process
from conftest import FakeClock

from failure_aware import Ledger, State, ValidationError
from failure_aware.config import Config, config_from_mapping
from failure_aware.diagnostics.health_report import HealthReport, Verdict
from failure_aware.domain.health_rules import HealthRules
from failure_aware.domain.timeutil import to_us, utc_now
from failure_aware.storage.tables import correlation_state, failure_cluster

T = "payment.webhook"
OTHER = "crm.sync"


def fail_once(ledger: Ledger, event_type: str = T) -> int:
    """A new event with one failed attempt now: FAILED, retry due 10 s later (default policy)."""
    event = ledger.detect(event_type)
    ledger.report(event.id, False, error_type="TimeoutError", error="upstream timed out after 30s")
    return event.id


def succeed_once(ledger: Ledger, event_type: str = T) -> int:
    event = ledger.detect(event_type)
    ledger.report(event.id, True)
    return event.id


def die_now(ledger: Ledger, event_type: str = T) -> int:
    """A new event that fails once and is buried now: DEAD."""
    event_id = fail_once(ledger, event_type)
    ledger.bury(event_id, actor="ops")
    return event_id


def rules_fired(report: HealthReport) -> dict[str, Verdict]:
    return {reason.rule: reason.verdict for reason in report.reasons}


# -- one test per rule -----------------------------------------------------------------------------------
def test_a_quiet_ledger_is_ok(ledger: Ledger, clock: FakeClock) -> None:
    succeed_once(ledger)
    ledger.detect(T)
    report = ledger.health()
    assert report.verdict is Verdict.OK and report.exit_code == 0
    assert report.reasons == ()
    assert [f.event_type for f in report.by_type] == [T]


def test_a_stuck_claim_is_critical(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect(T)
    ledger.claim(event.id, worker="host-a:42", lease_seconds=60)
    clock.advance(60)  # the lease expires at now + 60 s: not yet stuck
    assert ledger.health().overall.stuck_claims == 0
    clock.advance(1)
    report = ledger.health()
    assert report.verdict is Verdict.CRITICAL and report.exit_code == 2
    assert rules_fired(report) == {"stuck_claims": Verdict.CRITICAL}
    assert report.overall.stuck_claims == 1
    stuck = report.overall.oldest_stuck
    assert stuck is not None and stuck.event_id == event.id and stuck.claimed_by == "host-a:42"
    assert stuck.age_seconds == 1.0
    assert "1 claim is stuck" in report.reasons[0].message and "host-a:42" in report.reasons[0].message


def test_a_retry_overdue_for_more_than_15_minutes_is_degraded(ledger: Ledger, clock: FakeClock) -> None:
    event_id = fail_once(ledger)  # next_retry_at = now + 10 s
    clock.advance(10 + 15 * 60)  # due for exactly 15 min: due, not yet overdue
    report = ledger.health()
    assert report.verdict is Verdict.OK
    assert (report.overall.retries_due, report.overall.overdue_retries) == (1, 0)
    clock.advance(1)
    report = ledger.health()
    assert report.verdict is Verdict.DEGRADED and report.exit_code == 1
    assert rules_fired(report) == {"overdue_retries": Verdict.DEGRADED}
    assert report.overall.overdue_retries == 1
    late = report.overall.most_overdue
    assert late is not None and late.event_id == event_id and late.age_seconds == 15 * 60 + 1
    assert "1 retry is overdue" in report.reasons[0].message and "15m 1s" in report.reasons[0].message


def test_a_retry_overdue_for_more_than_an_hour_is_critical(ledger: Ledger, clock: FakeClock) -> None:
    fail_once(ledger)
    clock.advance(10 + 3600)
    assert ledger.health().verdict is Verdict.DEGRADED  # overdue by exactly 1 h: not more
    clock.advance(1)
    report = ledger.health()
    assert report.verdict is Verdict.CRITICAL
    assert rules_fired(report) == {"overdue_retries": Verdict.CRITICAL}
    assert "more than 1h" in report.reasons[0].message


def test_a_failure_rate_of_50_percent_over_10_attempts_is_critical(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(5):
        fail_once(ledger)
        succeed_once(ledger)
    report = ledger.health()
    assert (report.overall.attempts, report.overall.failures) == (10, 5)
    assert report.overall.failure_rate == 0.5
    assert report.verdict is Verdict.CRITICAL
    assert rules_fired(report) == {"failure_rate": Verdict.CRITICAL}
    assert "50.0%" in report.reasons[0].message and "5 of 10 attempts" in report.reasons[0].message


def test_a_failure_rate_over_only_9_attempts_is_not_judged(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(5):
        fail_once(ledger)
    for _ in range(4):
        succeed_once(ledger)
    report = ledger.health()
    assert report.overall.attempts == 9 and report.overall.failure_rate == pytest.approx(5 / 9)
    assert report.verdict is Verdict.OK, report.reasons


def test_a_failure_rate_of_10_percent_is_degraded(ledger: Ledger, clock: FakeClock) -> None:
    fail_once(ledger)
    for _ in range(9):
        succeed_once(ledger)
    report = ledger.health()
    assert report.verdict is Verdict.DEGRADED
    assert rules_fired(report) == {"failure_rate": Verdict.DEGRADED}
    for _ in range(2):  # 1 of 12: below 10 %
        succeed_once(ledger)
    assert ledger.health().verdict is Verdict.OK


def test_the_rate_counts_only_the_last_hour(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(10):
        fail_once(ledger)  # 100 % failures ...
    clock.advance(3600)
    assert ledger.health().overall.attempts == 10  # ... exactly an hour ago: still in the window
    clock.advance(1)
    report = ledger.health()
    assert report.overall.attempts == 0 and report.overall.failure_rate is None
    assert "failure_rate" not in rules_fired(report)


def test_a_death_in_the_last_24_hours_is_degraded_then_forgotten(ledger: Ledger, clock: FakeClock) -> None:
    die_now(ledger)
    report = ledger.health()
    assert report.verdict is Verdict.DEGRADED
    assert rules_fired(report) == {"recent_deaths": Verdict.DEGRADED}
    assert (report.overall.dead, report.overall.dead_recent) == (1, 1)
    clock.advance(hours=24)
    assert ledger.health().verdict is Verdict.DEGRADED  # exactly 24 h ago: still within the window
    clock.advance(1)
    report = ledger.health()
    assert report.verdict is Verdict.OK
    assert (report.overall.dead, report.overall.dead_recent) == (1, 0)


def test_a_revived_event_that_died_recently_still_counts(ledger: Ledger, clock: FakeClock) -> None:
    event_id = die_now(ledger)
    ledger.revive(event_id, actor="ops")
    report = ledger.health()
    assert report.overall.dead == 0 and report.overall.dead_recent == 1
    assert report.verdict is Verdict.DEGRADED


def add_cluster(db_url: str, clock: FakeClock, *, ended_seconds_ago: int, window_seconds: int = 600) -> None:
    """A stored cluster (as `correlate` writes it) whose last failure was ``ended_seconds_ago``."""
    now = to_us(clock())
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(correlation_state).values(
            id=1, window_us=window_seconds * 1_000_000, min_failures=3, min_events=2, last_attempt_id=0,
            updated_at_us=now,
        ))
        conn.execute(sa.insert(failure_cluster).values(
            id="c-test", event_type=T, window_start_us=now - (ended_seconds_ago + 120) * 1_000_000,
            window_end_us=now - ended_seconds_ago * 1_000_000, failure_count=4, event_count=3,
            top_fingerprints="[]", window_seconds=window_seconds, min_failures=3, min_events=2,
        ))
    engine.dispose()


def test_an_active_cluster_is_degraded(ledger: Ledger, clock: FakeClock, db_url: str) -> None:
    succeed_once(ledger)
    add_cluster(db_url, clock, ended_seconds_ago=0)
    report = ledger.health()
    assert report.verdict is Verdict.DEGRADED
    assert rules_fired(report) == {"active_clusters": Verdict.DEGRADED}
    assert report.cluster_window_seconds == 600
    assert [c.id for c in report.overall.active_clusters] == ["c-test"]
    assert "4 failures of 3 payment.webhook events" in report.reasons[0].message
    clock.advance(600)
    assert ledger.health().verdict is Verdict.DEGRADED  # window_end == now - W: still active
    clock.advance(1)
    report = ledger.health()
    assert report.verdict is Verdict.OK and report.overall.active_clusters == ()


def test_clusters_found_by_correlate_count_as_active(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(3):  # 3 failures of 3 events within 10 min: one cluster under the default rule
        fail_once(ledger)
        clock.advance(1)
    assert ledger.health().overall.active_clusters == ()  # correlate never ran: nothing is active
    ledger.correlate()
    report = ledger.health()
    assert len(report.overall.active_clusters) == 1
    assert report.overall.active_clusters[0].failure_count == 3
    assert rules_fired(report) == {"active_clusters": Verdict.DEGRADED}


def test_the_worst_rule_sets_the_verdict_reasons_worst_first(ledger: Ledger, clock: FakeClock) -> None:
    die_now(ledger)
    event = ledger.detect(OTHER)
    ledger.claim(event.id, lease_seconds=1)
    clock.advance(2)
    report = ledger.health()
    assert report.verdict is Verdict.CRITICAL
    assert [r.rule for r in report.reasons] == ["stuck_claims", "recent_deaths"]
    by_type = {f.event_type: f.verdict for f in report.by_type}
    assert by_type == {T: Verdict.DEGRADED, OTHER: Verdict.CRITICAL}


# -- thresholds, scope, figures ---------------------------------------------------------------------------
def test_thresholds_come_from_the_config(db_url: str, clock: FakeClock) -> None:
    config = config_from_mapping({"health": {"overdue_after": "1m", "critical_overdue": "5m",
                                             "min_attempts_for_rate": 2, "critical_failure_rate": 0.9}})
    with Ledger(db_url, config=config, clock=clock) as ledger:
        fail_once(ledger)
        succeed_once(ledger)
        report = ledger.health()
        assert report.rules.min_attempts_for_rate == 2
        assert rules_fired(report) == {"failure_rate": Verdict.DEGRADED}  # 50 %: >= 10 %, < 90 %
        clock.advance(10 + 61)
        assert rules_fired(ledger.health())["overdue_retries"] is Verdict.DEGRADED  # 1 min, not 15
        clock.advance(5 * 60)
        assert rules_fired(ledger.health())["overdue_retries"] is Verdict.CRITICAL  # 5 min, not 1 h
    with Ledger(db_url, config=Config(health=HealthRules(dead_window_seconds=60)), clock=clock) as ledger:
        die_now(ledger)
        clock.advance(61)
        assert "recent_deaths" not in rules_fired(ledger.health())


def test_type_restricts_every_figure(ledger: Ledger, clock: FakeClock) -> None:
    stuck = ledger.detect(T)
    ledger.claim(stuck.id, lease_seconds=1)
    for _ in range(3):
        succeed_once(ledger, OTHER)
    ledger.detect(OTHER)
    clock.advance(2)
    everything = ledger.health()
    assert everything.verdict is Verdict.CRITICAL and everything.overall.total_events == 5
    mine = ledger.health(event_type=T)
    assert mine.verdict is Verdict.CRITICAL and mine.event_type == T
    assert mine.overall.total_events == 1 and mine.overall.counts["IN_FLIGHT"] == 1
    assert [f.event_type for f in mine.by_type] == [T]
    assert mine.reasons[0].message.startswith(f"{T}: ")
    other = ledger.health(event_type=OTHER)
    assert other.verdict is Verdict.OK and other.overall.stuck_claims == 0
    assert other.overall.counts == {"PENDING": 1, "IN_FLIGHT": 0, "SUCCEEDED": 3, "FAILED": 0, "DEAD": 0}
    assert other.overall.attempts == 3
    unknown = ledger.health(event_type="never.seen")
    assert unknown.verdict is Verdict.OK and unknown.overall.total_events == 0 and unknown.by_type == ()
    with pytest.raises(ValidationError, match="event_type"):
        ledger.health(event_type="not a type!")


def test_counts_by_state_match_the_events(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(3):
        succeed_once(ledger)
    for _ in range(2):
        fail_once(ledger, OTHER)
    die_now(ledger, OTHER)
    ledger.detect(T)
    ledger.claim(ledger.detect(T).id)
    report = ledger.health()
    for figures in (report.overall, *report.by_type):
        expected = {state.value: len(ledger.events(state=state, event_type=figures.event_type, limit=1000))
                    for state in State}
        assert dict(figures.counts) == expected
        assert figures.total_events == sum(expected.values())
    assert report.overall.counts == {"PENDING": 1, "IN_FLIGHT": 1, "SUCCEEDED": 3, "FAILED": 2, "DEAD": 1}
    assert report.overall.retries_due == 0  # failed just now: due in 10 s
    clock.advance(10)
    assert ledger.health().overall.retries_due == 2


def test_a_failing_type_is_not_hidden_by_a_busy_healthy_one(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(6):
        fail_once(ledger, OTHER)
    for _ in range(4):
        succeed_once(ledger, OTHER)
    for _ in range(100):
        succeed_once(ledger, T)
    report = ledger.health()
    assert report.overall.failure_rate == pytest.approx(6 / 110)  # below 10 % overall ...
    assert report.overall.verdict is Verdict.OK
    assert report.verdict is Verdict.CRITICAL  # ... but 60 % for one type
    assert [(r.rule, r.event_type) for r in report.reasons] == [("failure_rate", OTHER)]


def test_oldest_unresolved_and_most_retried(ledger: Ledger, clock: FakeClock) -> None:
    old_done = ledger.detect(T)  # the oldest event, but resolved: not counted
    for _ in range(3):
        ledger.report(old_done.id, False, error_type="E", error="x", force=True)
    ledger.report(old_done.id, True, force=True)  # 4 attempts, SUCCEEDED: history, not a retry loop
    clock.advance(60)
    oldest = ledger.detect(OTHER)
    clock.advance(60)
    looping = ledger.detect(T)
    for _ in range(3):
        ledger.report(looping.id, False, error_type="E", error="x", force=True)
    ledger.detect(T)
    clock.advance(30)
    report = ledger.health()
    mark = report.overall.oldest_unresolved
    assert mark is not None and mark.event_id == oldest.id and mark.state is State.PENDING
    assert mark.age_seconds == 90 and mark.since == oldest.detected_at
    retried = report.overall.most_retried
    assert retried is not None and (retried.event_id, retried.attempt_count) == (looping.id, 3)
    per_type = {f.event_type: f for f in report.by_type}
    assert per_type[T].oldest_unresolved is not None and per_type[T].oldest_unresolved.event_id == looping.id
    assert per_type[OTHER].most_retried is None  # no attempt yet


def test_health_writes_nothing(ledger: Ledger, clock: FakeClock, db_url: str) -> None:
    fail_once(ledger)
    die_now(ledger)
    ledger.claim(ledger.detect(OTHER).id, lease_seconds=1)
    clock.advance(3700)
    before = dump(db_url)
    assert ledger.health().verdict is Verdict.CRITICAL
    with Ledger(db_url, readonly=True, config=Config(), clock=clock) as readonly:
        assert readonly.health().as_dict() == ledger.health().as_dict()
        assert readonly.health(event_type=T).verdict is Verdict.CRITICAL
    assert dump(db_url) == before


def test_report_as_dict_is_json_ready(ledger: Ledger, clock: FakeClock) -> None:
    fail_once(ledger)
    clock.advance(3700)
    data = json.loads(json.dumps(ledger.health().as_dict()))
    assert data["verdict"] == "CRITICAL" and data["exit_code"] == 2
    assert data["checked_at"] == "2026-01-02T05:01:40Z"
    assert data["rules"]["overdue_after_seconds"] == 900
    assert data["overall"]["most_overdue"]["since"] == "2026-01-02T04:00:10Z"
    assert data["by_type"][0]["counts"]["FAILED"] == 1


# -- a worker killed mid-attempt --------------------------------------------------------------------------
WORKER = """
import sys, time
from pathlib import Path
from failure_aware import Ledger

ledger = Ledger(sys.argv[1])
def handler(event):
    Path(sys.argv[3]).write_text("running")
    time.sleep(120)
ledger.run(int(sys.argv[2]), handler, worker="doomed-worker", lease_seconds=1)
"""


def test_a_worker_killed_mid_attempt_leaves_a_stuck_claim(db_url: str, tmp_path: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:  # the real clock: the worker is another process
        event = ledger.detect(T)
        flag = tmp_path / "running"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        worker = subprocess.Popen([sys.executable, "-c", WORKER, db_url, str(event.id), str(flag)], env=env)
        try:
            deadline = time.monotonic() + 60
            while not flag.exists():
                assert worker.poll() is None and time.monotonic() < deadline, "the worker did not start"
                time.sleep(0.05)
            os.kill(worker.pid, signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait()
        assert ledger.get(event.id).state is State.IN_FLIGHT
        lease = ledger.get(event.id).lease_expires_at
        assert lease is not None
        time.sleep(max(0.0, (lease - utc_now()).total_seconds()) + 0.05)
        report = ledger.health()
        assert report.verdict is Verdict.CRITICAL
        assert report.overall.oldest_stuck is not None
        assert report.overall.oldest_stuck.claimed_by == "doomed-worker"
        ledger.recover()
        assert ledger.health().overall.stuck_claims == 0


# -- the CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli_ledger(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Ledger:
    """A ledger on the real clock moved two hours back, so what it records is two hours old for the CLI."""
    monkeypatch.chdir(tmp_path)  # no config file around: the default rules
    return Ledger(db_url, config=Config(), clock=lambda: utc_now() - timedelta(hours=2))


def test_cli_exit_code_follows_the_verdict(
    cli_ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    succeed_once(cli_ledger)
    ok = run_main(capsys, "--db", db_url, "health")
    assert ok.code == 0 and "OK" in ok.out and T in ok.out
    die_now(cli_ledger)
    degraded = run_main(capsys, "--db", db_url, "health")
    assert degraded.code == 1 and "DEGRADED" in degraded.out and "died in the last 1d" in degraded.out
    cli_ledger.claim(cli_ledger.detect(OTHER).id, worker="lost-worker", lease_seconds=60)
    critical = run_main(capsys, "--db", db_url, "health")
    assert critical.code == 2 and "CRITICAL" in critical.out and "lost-worker" in critical.out
    only_t = run_main(capsys, "--db", db_url, "health", "--type", T)
    assert only_t.code == 1 and OTHER not in only_t.out
    cli_ledger.close()


def test_cli_json_is_pure_and_matches_the_library(
    cli_ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fail_once(cli_ledger)
    outcome = run_main(capsys, "--db", db_url, "health", "--json")
    data = outcome.json()
    assert outcome.code == 2 == data["exit_code"]  # overdue by almost two hours
    assert data["reasons"][0]["rule"] == "overdue_retries"
    assert data["overall"]["counts"]["FAILED"] == 1
    result = invoke(db_url, "health", "--type", OTHER, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["overall"]["total_events"] == 0
    cli_ledger.close()


def test_cli_exits_3_when_it_cannot_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = run_main(capsys, "--db", f"sqlite:///{tmp_path / 'none.db'}", "health")
    assert missing.code == 3 and "no failure-aware database" in missing.err and missing.out == ""
    assert not (tmp_path / "none.db").exists()
    bad = run_main(capsys, "--db", "nosuch://where", "health", "--json")
    assert bad.code == 3 and bad.out == "" and "error (StorageError)" in bad.err
    with Ledger(f"sqlite:///{tmp_path / 'real.db'}", config=Config()) as ledger:
        ledger.detect(T)
    bad_type = run_main(capsys, "--db", f"sqlite:///{tmp_path / 'real.db'}", "health", "--type", "no spaces")
    assert bad_type.code == 3 and "event_type" in bad_type.err and bad_type.out == ""


def test_cli_health_as_a_process(cli_ledger: Ledger, db_url: str, tmp_path: Path) -> None:
    die_now(cli_ledger)
    cli_ledger.close()
    done = run_process(python_m("--db", db_url, "health", "--json"), cwd=tmp_path)
    assert done.code == 1, done.err
    assert done.json()["verdict"] == "DEGRADED"
    helped = run_process(python_m("health", "--help"), cwd=tmp_path)
    assert helped.code == 0 and "0 OK, 1 DEGRADED, 2 CRITICAL" in helped.out


# -- cost: no statement reads a whole history table ----------------------------------------------------------
HISTORY_SIZED = ("event_detected", "event_state", "attempt", "transition", "annotation")


def test_no_statement_scans_a_history_sized_table(ledger: Ledger, clock: FakeClock, db_url: str) -> None:
    """Every statement of health() is an index lookup or range (EXPLAIN on both backends).

    PostgreSQL picks sequential scans for tiny tables whatever the indexes, so there the plans are taken
    with ``enable_seqscan = off``: a Seq Scan that remains has no index to use at all.
    """
    for _ in range(3):
        fail_once(ledger)
    die_now(ledger, OTHER)
    ledger.claim(ledger.detect(OTHER).id, lease_seconds=1)
    ledger.correlate()
    clock.advance(3700)
    statements: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    engine = ledger.store.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        report = ledger.health()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert report.overall.most_overdue is not None and report.overall.oldest_stuck is not None
    sqlite = engine.dialect.name == "sqlite"
    full_scan = re.compile(
        (r"^SCAN (" if sqlite else r"Seq Scan on (") + "|".join(HISTORY_SIZED) + r")\b"
    )
    assert len(statements) >= 8
    with engine.connect() as conn:
        if not sqlite:
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement,
                                        parameters).all()  # type: ignore[arg-type]
            lines = [str(row[-1] if sqlite else row[0]).strip() for row in plan]
            assert not [line for line in lines if full_scan.search(line)], (statement, lines)
