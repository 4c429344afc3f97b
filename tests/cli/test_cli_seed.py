"""The seed's interface, ``python cli.py`` (``failure_aware.cli.seed``), in-process on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import Outcome, dump

from failure_aware import Ledger
from failure_aware.cli import seed
from failure_aware.config import Config
from failure_aware.ledger import operator_name

VERDICT_CODES = {"OK": 0, "DEGRADED": 1, "CRITICAL": 2}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich fits tables to the terminal (80 columns when piped); keep cells on one line for the asserts."""
    monkeypatch.setenv("COLUMNS", "200")


def run_seed(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """Run the seed interface; argparse usage errors exit 2 by raising SystemExit."""
    capsys.readouterr()
    try:
        code = seed.main(list(argv))
    except SystemExit as done:
        code = int(done.code or 0)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


@pytest.fixture
def filled(db_url: str) -> list[int]:
    """Events in several states (ids in detection order); the last two failed with notes on one."""
    with Ledger(db_url, config=Config()) as ledger:
        ids = [ledger.detect("payment.webhook", {"n": n}).id for n in range(4)]
        ledger.report(ids[0], True)
        for event_id in ids[2:]:
            ledger.report(event_id, False, error_type="HTTPError", error=f"HTTP 503 from upstream {event_id}")
        ledger.bury(ids[3], actor="ops")
        ledger.annotate(ids[2], "first look", author="ann")
        ledger.annotate(ids[2], "provider says fixed", author="bob")
    return ids


def test_status_counts_events_by_state(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_seed(capsys, "--db", db_url, "--status", "--json")
    assert outcome.code == 0, outcome
    counts = outcome.json()
    assert counts["by_state"] == {"PENDING": 1, "IN_FLIGHT": 0, "SUCCEEDED": 1, "FAILED": 1, "DEAD": 1}
    assert counts["total"] == len(filled)
    text = run_seed(capsys, "--db", db_url, "--status")
    assert "FAILED" in text.out and "total" in text.out


def test_recent_shows_the_newest_with_tries_errors_and_notes(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_seed(capsys, "--db", db_url, "--recent", "2", "--json")
    assert outcome.code == 0, outcome
    recent = outcome.json()
    assert [item["id"] for item in recent] == [filled[3], filled[2]]
    noted = recent[1]
    assert noted["attempt_count"] == 1 and "HTTP 503" in noted["last_error"]
    assert noted["annotation_count"] == 2 and noted["latest_note"]["text"] == "provider says fixed"
    assert recent[0]["state"] == "DEAD" and recent[0]["annotation_count"] == 0

    text = run_seed(capsys, "--db", db_url, "--recent", "10").out
    assert "bob: provider says fixed (+1 more)" in text and "HTTP 503" in text


def test_health_exit_code_follows_the_verdict(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_seed(capsys, "--db", db_url, "--health", "--json")
    report = outcome.json()
    assert report["verdict"] == "DEGRADED"  # an event died within the last 24 h
    assert outcome.code == VERDICT_CODES[report["verdict"]] == 1
    text = run_seed(capsys, "--db", db_url, "--health")
    assert text.code == 1 and "DEGRADED" in text.out


def test_health_of_a_quiet_ledger_is_ok(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.detect("payment.webhook")
    outcome = run_seed(capsys, "--db", db_url, "--health")
    assert outcome.code == 0 and "OK" in outcome.out


def test_clusters_lists_what_correlate_stored(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        empty = run_seed(capsys, "--db", db_url, "--clusters", "--json")
        assert empty.code == 0 and empty.json() == []
        for _ in range(3):
            event = ledger.detect("sync.record")
            ledger.report(event.id, False, error_type="ConnectionError", error="connection refused")
        ledger.correlate()
        stored = [c.as_dict() for c in ledger.clusters()]
    assert stored, "the fixture should produce a cluster"
    outcome = run_seed(capsys, "--db", db_url, "--clusters", "--json")
    assert outcome.code == 0 and outcome.json() == stored
    text = run_seed(capsys, "--db", db_url, "--clusters")
    assert stored[0]["id"] in text.out and "sync.record" in text.out


def test_annotate_adds_a_note_by_the_os_user(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_seed(capsys, "--db", db_url, "--annotate", str(filled[1]), "retry after the fix", "--json")
    assert outcome.code == 0, outcome
    note = outcome.json()
    assert note["author"] == operator_name() and note["event_id"] == filled[1]
    with Ledger(db_url, readonly=True, config=Config()) as ledger:
        assert [n.text for n in ledger.show(filled[1]).annotations] == ["retry after the fix"]


@pytest.mark.parametrize(("args", "code", "mentions"), [
    (["--annotate", "999999", "note"], 1, "999999"),
    (["--annotate", "abc", "note"], 2, "EVENT_ID"),
    (["--annotate", "1", ""], 1, "text"),
    (["--recent", "0"], 2, "--recent"),
    (["--recent", "x"], 2, "--recent"),
    (["--status", "--health"], 2, "not allowed"),
    ([], 2, "required"),
    (["--status", "--frobnicate"], 2, "--frobnicate"),
])
def test_bad_input(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str], *, args: list[str], code: int,
    mentions: str,
) -> None:
    before = dump(db_url)
    outcome = run_seed(capsys, "--db", db_url, *args)
    assert outcome.code == code and outcome.out == ""
    assert mentions in outcome.err and "Traceback" not in outcome.err
    assert dump(db_url) == before


@pytest.mark.parametrize("flag", [
    ["--status"], ["--recent", "5"], ["--clusters"], ["--health"],
    ["--status", "--json"], ["--recent", "3", "--json"], ["--health", "--json"],
])
def test_inspection_flags_write_nothing(
    db_url: str, filled: list[int], capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.correlate()
    before = dump(db_url)
    outcome = run_seed(capsys, "--db", db_url, *flag)
    assert outcome.code in (0, 1) and outcome.out and "Traceback" not in outcome.err
    if "--json" in flag:
        json.loads(outcome.out)
    assert dump(db_url) == before


@pytest.mark.parametrize(("flag", "code"), [(["--status"], 1), (["--recent", "5"], 1), (["--clusters"], 1),
                                            (["--health"], 3)])
def test_inspection_flags_never_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str], code: int
) -> None:
    outcome = run_seed(capsys, "--db", f"sqlite:///{tmp_path / 'absent.db'}", *flag)
    assert outcome.code == code and "no failure-aware database" in outcome.err
    assert list(tmp_path.iterdir()) == []


def test_help_explains_the_flags_and_points_to_the_full_cli(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_seed(capsys, "--help")
    assert outcome.code == 0
    for flag in ("--status", "--recent", "--health", "--clusters", "--annotate", "--db", "--json"):
        assert flag in outcome.out
    assert "failure-aware --help" in outcome.out and "python -m failure_aware" in outcome.out
