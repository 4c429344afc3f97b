"""The CLI's rough edges (issue 9): exclusive flags, values of the wrong form, payloads from files, inert
output of outside text; ``report --permanent --retry-after --detail``; and the health backlog rule."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import dump, run_main
from conftest import FakeClock

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.diagnostics.health_report import Verdict


@pytest.fixture
def url(db_url: str) -> str:
    Ledger(db_url, config=Config()).close()
    return db_url


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    outcome = run_main(capsys, "--db", url, *args)
    assert "internal error" not in outcome.err and "Traceback" not in outcome.err
    return outcome.code, outcome.out, outcome.err


@pytest.mark.parametrize(("args", "message"), [
    (("report", "1", "--ok", "--failed"), "exactly one"),
    (("report", "1"), "--ok or --failed"),
    (("correlate", "--window", "0s"), "must be more than 0"),
    (("worker", "--handler", "mod"), "module:function"),
    (("retry", "--due", "--handler", "mod"), "module:function"),
    (("run", "1", "--handler", "mod"), "module:function"),
    (("worker", "--handler", "handlers_fixture:ok", "--lease", "0"), "must be more than 0"),
    (("worker", "--handler", "handlers_fixture:ok", "--poll", "99999999999d"), "100 years at most"),
    (("detect", "pay.hook", "--payload", "@/no/such/file.json"), "cannot read"),
    (("report", "1", "--failed", "--retry-after", "soon"), "neither seconds"),
])
def test_values_of_the_wrong_form_are_usage_errors(
    url: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    with Ledger(url, config=Config()) as ledger:
        ledger.detect("pay.hook")
    before = dump(url)
    code, _, err = cli(capsys, url, *args)
    assert code == 2 and message in err, err
    assert dump(url) == before


def test_an_empty_db_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = run_main(capsys, "--db", "", "detect", "pay.hook")
    assert outcome.code == 2 and "--db" in outcome.err
    assert list(tmp_path.iterdir()) == []  # the default database was not created instead


def test_a_payload_from_a_file_or_stdin(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "payload.json"
    file.write_text('{"amount": 12, "name": "ünïcode"}', encoding="utf-8")
    code, out, _ = cli(capsys, url, "detect", "pay.hook", "--payload", f"@{file}", "--json")
    assert code == 0 and json.loads(out)["payload"] == {"amount": 12, "name": "ünïcode"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    code, out, _ = cli(capsys, url, "detect", "pay.hook", "--payload", "-", "--json")
    assert code == 0 and json.loads(out)["payload"] == {"from": "stdin"}


def test_retry_too_early_names_force(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(url, config=Config()) as ledger:
        event = ledger.detect("pay.hook")
        ledger.report(event.id, False, error="e")
    code, _, err = cli(capsys, url, "report", str(event.id), "--failed")
    assert code == 1 and "RetryTooEarly" in err and "--force" in err


def test_import_skip_invalid_with_no_valid_line_exits_1(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "no spaces allowed"}\n{not json\n', encoding="utf-8")
    code, _, err = cli(capsys, url, "import", str(bad), "--skip-invalid")
    assert code == 1 and "not one valid line" in err
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"event_type": "pay.hook"}\n{not json\n', encoding="utf-8")
    code, _, _ = cli(capsys, url, "import", str(mixed), "--skip-invalid")
    assert code == 0


def test_outside_text_is_shown_inert_and_stored_unchanged(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "\x1b[31mRED\x1b[0m \x9b31m C1 \x07bell"
    with Ledger(url, config=Config()) as ledger:
        event = ledger.detect("pay.hook", key="k\x1b[2J")
        ledger.report(event.id, False, error_type="E", error=hostile)
        ledger.annotate(event.id, "note " + hostile, author="ops [bold]")
    for command in (("show", str(event.id)), ("events",), ("show", str(event.id), "--json"),
                    ("events", "--json"), ("export",)):
        code, out, _ = cli(capsys, url, *command)
        assert code == 0
        assert not any(ch in out for ch in "\x1b\x9b\x07"), (command, out)
    code, out, _ = cli(capsys, url, "show", str(event.id))
    assert "\\x1b[31mRED" in out and "\\x9b31m" in out and "ops [bold]" in out
    code, out, _ = cli(capsys, url, "show", str(event.id), "--json")
    assert json.loads(out)["attempts"][0]["error"] == hostile  # the JSON escapes it; the data is as stored
    with Ledger(url, config=Config()) as ledger:
        assert ledger.get(event.id).last_error == hostile


def test_report_permanent_retry_after_and_detail(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(url, config=Config()) as ledger:
        detected = datetime(2026, 1, 2, 3, tzinfo=UTC)
        gone, busy, later, capped = (ledger.detect("pay.hook", key=k, at=detected).id for k in "gblc")
    code, out, _ = cli(capsys, url, "report", str(gone), "--failed", "--permanent", "--json")
    assert code == 0 and json.loads(out)["state"] == "DEAD" and "permanent" in json.loads(out)["reason"]
    code, out, _ = cli(capsys, url, "report", str(busy), "--failed", "--at", "2026-01-02T04:00:00Z",
                       "--retry-after", "120", "--detail", '{"status": 503}', "--json")
    result = json.loads(out)
    assert code == 0 and result["next_retry_at"] == "2026-01-02T04:02:00Z"  # not the policy's 10 s
    assert result["attempt"]["detail"] == {"status": 503}
    code, out, _ = cli(capsys, url, "report", str(later), "--failed", "--at", "2026-01-02T04:00:00Z",
                       "--retry-after", "2026-01-02T05:00:00Z", "--json")
    assert json.loads(out)["next_retry_at"] == "2026-01-02T05:00:00Z"
    code, out, _ = cli(capsys, url, "report", str(capped), "--failed", "--at", "2026-01-02T04:00:00Z",
                       "--retry-after", "30d", "--json")
    assert json.loads(out)["next_retry_at"] == "2026-01-03T04:00:00Z"  # capped by max_retry_after, 24 h
    code, out, _ = cli(capsys, url, "show", str(busy))
    assert '"status": 503' in out
    code, _, err = cli(capsys, url, "report", str(gone), "--ok", "--detail", "[1]")
    assert code == 2 and "JSON object" in err


def test_a_succeeded_report_takes_no_failure_fields(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(url, config=Config()) as ledger:
        event = ledger.detect("pay.hook")
    code, _, err = cli(capsys, url, "report", str(event.id), "--ok", "--permanent")
    assert code == 1 and "succeeded attempt takes no" in err


# -- health: the backlog -------------------------------------------------------------------------------------
def test_a_backlog_of_pending_events_degrades_then_is_critical(ledger: Ledger, clock: FakeClock) -> None:
    waiting = [ledger.detect("pay.hook", key=f"w{n}").id for n in range(12)]
    ledger.detect("job.sync", key="fresh")
    assert ledger.health().verdict is Verdict.OK
    assert ledger.health().overall.due == 13  # PENDING events are due work
    clock.advance(minutes=16)
    ledger.detect("job.sync", key="new")  # just detected: not a backlog
    report = ledger.health()
    backlog = [r for r in report.reasons if r.rule == "backlog"]
    assert report.verdict is Verdict.DEGRADED and len(backlog) == 1
    assert backlog[0].message.startswith("13 events waiting more than 15m with no attempt")
    assert "is a worker running?" in backlog[0].message
    ledger.report(waiting[0], False, error="e")  # an attempt: that one is no longer waiting
    failed_due = ledger.health().overall
    assert (failed_due.backlog, failed_due.due) == (12, 13)
    clock.advance(minutes=50)
    report = ledger.health()
    assert report.verdict is Verdict.CRITICAL
    assert any(r.rule == "backlog" and r.verdict is Verdict.CRITICAL and "more than 1h" in r.message
               for r in report.reasons)
    by_type = {f.event_type: f for f in report.by_type}
    assert by_type["job.sync"].backlog == 2 and by_type["pay.hook"].backlog_critical == 11
    assert ledger.get(waiting[0]).state is State.FAILED


def test_the_backlog_thresholds_are_configurable(db_url: str, clock: FakeClock) -> None:
    from failure_aware.config import config_from_mapping

    config = config_from_mapping({"health": {"backlog_after": "1m", "critical_backlog": "2m"},
                                  "max_clock_skew": "1m", "retry": {"max_retry_after": "1h"}})
    assert config.health.backlog_after_seconds == 60 and config.max_clock_skew_seconds == 60
    assert config.policies.default.max_retry_after_seconds == 3600
    with Ledger(db_url, config=config, clock=clock) as ledger:
        ledger.detect("pay.hook")
        clock.advance(90)
        assert ledger.health().verdict is Verdict.DEGRADED
        clock.advance(timedelta(minutes=1).total_seconds())
        assert ledger.health().verdict is Verdict.CRITICAL
