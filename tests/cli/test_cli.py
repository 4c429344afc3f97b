"""The ``failure-aware`` commands, run in-process on both backends: happy paths and their JSON output.

Errors, read-only guarantees, the seed's ``cli.py``, real subprocesses and the docs check live in the other
``test_cli_*.py`` files.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cli_support import dump, invoke, row_counts, run_main, table_names

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.storage import migrations
from failure_aware.storage.engine import make_engine, parse_url


def failed_event(ledger: Ledger, event_type: str = "payment.webhook", key: str | None = None) -> int:
    """A new event with one failed attempt (FAILED)."""
    event = ledger.detect(event_type, {"amount": 12}, key=key)
    ledger.report(event.id, False, error_type="TimeoutError", error="upstream timed out after 30s")
    return event.id


def dead_event(ledger: Ledger, event_type: str = "payment.webhook") -> int:
    event_id = failed_event(ledger, event_type)
    ledger.bury(event_id, actor="setup", reason="test")
    return event_id


# -- global options ----------------------------------------------------------------------------------------
def test_db_option_before_the_command_and_env_resolution(db_url: str, tmp_path: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        event_id = failed_event(ledger, key="evt_env")
    by_option = invoke(db_url, "show", str(event_id), "--json")
    assert by_option.exit_code == 0, by_option.output
    assert by_option.stdout.count("\n") == 1 and json.loads(by_option.stdout)["event"]["key"] == "evt_env"

    from click.testing import CliRunner

    from failure_aware.cli import cli

    by_env = CliRunner().invoke(cli, ["show", str(event_id), "--json"], env={"FAILURE_AWARE_DB": db_url},
                                catch_exceptions=False)
    assert by_env.exit_code == 0, by_env.output
    assert json.loads(by_env.stdout) == json.loads(by_option.stdout)

    # --db wins over the environment: pointing the environment elsewhere changes nothing.
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    both = CliRunner().invoke(cli, ["--db", db_url, "show", str(event_id), "--json"],
                              env={"FAILURE_AWARE_DB": elsewhere}, catch_exceptions=False)
    assert json.loads(both.stdout) == json.loads(by_option.stdout)
    assert not (tmp_path / "other.db").exists()


# -- revive / bury -------------------------------------------------------------------------------------------
def test_bury_then_revive_one_event_records_actor_and_reason(db_url: str) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        event_id = failed_event(ledger)

    buried = invoke(db_url, "bury", str(event_id), "--actor", "alice", "--reason", "customer closed",
                    "--json")
    assert buried.exit_code == 0, buried.output
    assert json.loads(buried.stdout)["state"] == "DEAD"

    revived = invoke(db_url, "revive", str(event_id), "--reason", "provider fixed")
    assert revived.exit_code == 0, revived.output
    assert f"event {event_id}" in revived.stdout and "PENDING" in revived.stdout

    with Ledger(db_url, readonly=True, config=Config()) as ledger:
        detail = ledger.show(event_id)
    assert detail.event.state is State.PENDING
    last_two = detail.transitions[-2:]
    assert [t.to_state for t in last_two] == [State.DEAD, State.PENDING]
    assert last_two[0].actor == "alice" and "customer closed" in last_two[0].reason
    assert "provider fixed" in last_two[1].reason and last_two[1].actor  # the OS user by default


def test_bulk_revive_dry_run_changes_nothing_then_revives_exactly_those(db_url: str) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        wanted = [dead_event(ledger, "sync.record") for _ in range(3)]
        other_type = dead_event(ledger, "payment.webhook")
        still_failed = failed_event(ledger, "sync.record")

    before = dump(db_url)
    dry = invoke(db_url, "revive", "--type", "sync.record", "--since", "1h", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["count"] == 3 and planned["event_ids"] == wanted
    assert dump(db_url) == before

    text = invoke(db_url, "revive", "--type", "sync.record", "--since", "1h", "--dry-run")
    assert "would revive 3" in text.stdout and all(str(i) in text.stdout for i in wanted)

    done = invoke(db_url, "revive", "--type", "sync.record", "--since", "1h", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["event_ids"] == wanted
    with Ledger(db_url, readonly=True, config=Config()) as ledger:
        assert {ledger.get(i).state for i in wanted} == {State.PENDING}
        assert ledger.get(other_type).state is State.DEAD
        assert ledger.get(still_failed).state is State.FAILED

    again = invoke(db_url, "revive", "--since", "2026-01-01T00:00:00Z", "--json")
    assert json.loads(again.stdout)["event_ids"] == [other_type]  # only what is still DEAD


@pytest.mark.parametrize("args", [
    ["revive"],
    ["revive", "--type", "a.b"],
    ["revive", "1", "--since", "1h"],
    ["revive", "1", "--dry-run"],
    ["revive", "--since", "yesterday"],
])
def test_revive_usage_errors(db_url: str, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    outcome = run_main(capsys, "--db", db_url, *args)
    assert outcome.code == 2
    assert outcome.out == "" and "Traceback" not in outcome.err
    assert "revive" in outcome.err


# -- import / export -----------------------------------------------------------------------------------------
RECORD = {
    "event_type": "payment.webhook", "key": "evt_123", "detected_at": "2026-01-02T04:45:54.971227Z",
    "payload": {"amount": 12},
    "attempts": [{"at": "2026-01-02T04:46:05Z", "outcome": "failed", "error_type": "TimeoutError",
                  "error": "upstream timed out after 30s"},
                 {"at": "2026-01-02T04:46:40Z", "outcome": "succeeded"}],
    "annotations": [{"at": "2026-01-02T05:00:00Z", "author": "ops", "text": "provider incident"}],
}


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_import_file_then_again_skips_existing(db_url: str, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(jsonl(RECORD, {"event_type": "sync.record", "key": "r1"}))
    first = invoke(db_url, "import", str(source), "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["imported"], report["skipped_existing"], report["invalid"]) == (2, 0, [])
    assert report["attempts"] == 2 and report["annotations"] == 1

    second = invoke(db_url, "import", str(source))
    assert second.exit_code == 0
    assert "imported 0 event(s)" in second.stdout and "skipped 2 existing" in second.stdout

    with Ledger(db_url, readonly=True, config=Config()) as ledger:
        imported = ledger.events(event_type="payment.webhook")
        assert [e.state for e in imported] == [State.SUCCEEDED]
        assert [n.text for n in ledger.show(imported[0].id).annotations] == ["provider incident"]


def test_import_from_stdin(db_url: str) -> None:
    result = invoke(db_url, "import", "-", "--json", input=jsonl(RECORD))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 1
    assert row_counts(db_url)["event_detected"] == 1


def test_import_skip_invalid_reports_lines_and_imports_the_rest(db_url: str) -> None:
    lines = jsonl(RECORD) + "{not json\n" + jsonl({"event_type": "bad type!"}, {"event_type": "ok.type"})
    result = invoke(db_url, "import", "-", "--skip-invalid", "--json", input=lines)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["imported"] == 2
    assert [item["line"] for item in report["invalid"]] == [2, 3]
    assert "event_type" in report["invalid"][1]["problem"]

    text = invoke(db_url, "import", "-", "--skip-invalid", input=lines)
    assert "2 invalid line(s)" in text.stdout and "line 2:" in text.stdout and "line 3:" in text.stdout


def test_export_import_round_trip(db_url: str, tmp_path: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        failed_event(ledger, "sync.record")
        dead_event(ledger, "payment.webhook")
        done = ledger.detect("payment.webhook", {"n": 1})
        ledger.report(done.id, True)
        ledger.annotate(done.id, "checked by hand", author="bob")
    exported = invoke(db_url, "export")
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    assert len(lines) == 3 and all(isinstance(json.loads(line), dict) for line in lines)

    only_sync = invoke(db_url, "export", "--type", "sync.record").stdout.splitlines()
    assert [json.loads(line)["event_type"] for line in only_sync] == ["sync.record"]

    target = tmp_path / "out" / "export.jsonl"
    target.parent.mkdir()
    to_file = invoke(db_url, "export", "-o", str(target))
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert "exported 3 event(s)" in to_file.stderr
    assert target.read_text().splitlines() == lines
    assert [p.name for p in target.parent.iterdir()] == ["export.jsonl"]  # no temporary left behind

    fresh = f"sqlite:///{tmp_path / 'copy.db'}"
    imported = invoke(fresh, "import", str(target), "--json")
    assert json.loads(imported.stdout)["imported"] == 3
    assert invoke(fresh, "export").stdout.splitlines() == lines


def test_import_legacy_database(db_url: str, tmp_path: Path) -> None:
    legacy = tmp_path / "seed.db"
    with sqlite3.connect(legacy) as conn:
        conn.execute(
            "CREATE TABLE event_detected (id INTEGER PRIMARY KEY, event_type TEXT, event_payload TEXT, "
            "detected_at TEXT, sync_status TEXT, retry_count INTEGER, last_error TEXT, next_retry_at TEXT, "
            "event_note TEXT)"
        )
        conn.executemany(
            "INSERT INTO event_detected VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(1, "payment.webhook", '{"a": 1}', "2025-06-01 10:00:00", "SYNCED", 0, None, None, None),
             (2, "payment.webhook", '{"a": 2}', "2025-06-01 10:05:00", "DEAD", 5, "HTTP 503", None,
              "provider outage")],
        )
    conn.close()
    result = invoke(db_url, "import", "--legacy", str(legacy), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 2
    with Ledger(db_url, readonly=True, config=Config()) as ledger:
        states = {e.key: e.state for e in ledger.events()}
        assert states == {"legacy-1": State.SUCCEEDED, "legacy-2": State.DEAD}
    again = invoke(db_url, "import", "--legacy", str(legacy))
    assert "skipped 2 existing" in again.stdout


def test_import_usage_errors(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for args in (["import"], ["import", "x.jsonl", "--legacy", "y.db"],
                 ["import", "--legacy", "y.db", "--skip-invalid"]):
        outcome = run_main(capsys, "--db", db_url, *args)
        assert outcome.code == 2, args
        assert "Traceback" not in outcome.err and outcome.out == ""


# -- db version / db upgrade / verify -------------------------------------------------------------------
def make_v1_database(db_url: str) -> None:
    """A database at schema version 1 (as an older failure-aware left it)."""
    engine = make_engine(parse_url(db_url))
    try:
        with engine.begin() as conn:
            migrations.apply(conn, migrations.MIGRATIONS[0], 0)
    finally:
        engine.dispose()


def test_db_version_and_upgrade_of_an_older_schema(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_v1_database(db_url)
    refused = run_main(capsys, "--db", db_url, "events")
    assert refused.code == 1 and "db upgrade" in refused.err

    before = dump(db_url)
    version = invoke(db_url, "db", "version", "--json")
    assert version.exit_code == 0, version.output
    status = json.loads(version.stdout)
    assert status["version"] == 1 and status["latest"] == migrations.LATEST_VERSION
    later = [m.version for m in migrations.MIGRATIONS[1:]]  # versions may have gaps (branches merge)
    assert [p["version"] for p in status["pending"]] == later
    assert "pending 2" in invoke(db_url, "db", "version").stdout
    assert dump(db_url) == before  # db version only reads

    upgraded = invoke(db_url, "db", "upgrade", "--json")
    assert upgraded.exit_code == 0, upgraded.output
    applied = json.loads(upgraded.stdout)
    assert applied["from_version"] == 1 and applied["created"] is False
    assert [a["version"] for a in applied["applied"]] == later

    assert "already at schema version" in invoke(db_url, "db", "upgrade").stdout
    assert json.loads(invoke(db_url, "db", "version", "--json").stdout)["pending"] == []
    assert run_main(capsys, "--db", db_url, "events", "--json").code == 0


def test_db_upgrade_creates_the_schema_in_an_empty_database(db_url: str) -> None:
    result = invoke(db_url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"created the failure-aware schema at version {migrations.LATEST_VERSION}" in result.stdout
    assert "event_detected" in row_counts(db_url)


def make_seed_database(path: Path) -> None:
    """A database of the seed's v0.1-v0.3 schema: our table name, no version table."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE event_detected (id INTEGER PRIMARY KEY, event_type TEXT, event_payload TEXT, "
            "detected_at TEXT, sync_status TEXT, retry_count INTEGER, last_error TEXT)"
        )
    conn.close()


def test_db_version_and_upgrade_of_a_foreign_database_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seed.db"
    make_seed_database(path)
    outcome = run_main(capsys, "--db", f"sqlite:///{path}", "db", "version")
    assert outcome.code == 1 and "not a failure-aware database" in outcome.err
    assert "import --legacy" in outcome.err  # the way forward is named
    upgrade = run_main(capsys, "--db", f"sqlite:///{path}", "db", "upgrade")
    assert upgrade.code == 1 and "Traceback" not in upgrade.err and upgrade.out == ""
    assert table_names(path) == {"event_detected"}


def test_db_version_of_a_database_without_our_schema(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    result = invoke(f"sqlite:///{path}", "db", "version", "--json")
    # Another application's tables: a foreign database, never one we add our tables to.
    assert result.exit_code == 1
    assert json.loads(result.stdout)["version"] is None
    assert table_names(path) == {"invoices"}


def test_verify_ok_and_when_the_projection_was_tampered_with(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        event_id = failed_event(ledger)
        ledger.detect("sync.record")
    ok = invoke(db_url, "verify", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True and json.loads(ok.stdout)["checked_events"] == 2
    assert "ok" in invoke(db_url, "verify").stdout

    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # derived data may be updated; history may not
        conn.execute(sa.text("UPDATE event_state SET attempt_count = 7 WHERE event_id = :i"), {"i": event_id})
    engine.dispose()
    broken = run_main(capsys, "--db", db_url, "verify", "--json")
    assert broken.code == 1
    report = json.loads(broken.out)
    assert report["ok"] is False and any(str(event_id) in p for p in report["problems"])
    assert "problem" in run_main(capsys, "--db", db_url, "verify").out
