"""Bad input through the CLI: one clear line naming the problem, exit 1 (2 for usage errors), no traceback,
nothing written. And the inspection commands: they write nothing and never create a missing database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli_support import dump, run_main, sqlite_file, table_names

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.domain.validation import DEFAULT_MAX_PAYLOAD_BYTES


@pytest.fixture
def seeded(db_url: str) -> dict[str, int]:
    """A database with one event in each interesting state; returns their ids by state name."""
    with Ledger(db_url, config=Config()) as ledger:
        pending = ledger.detect("payment.webhook", {"amount": 1}, key="p").id
        failed = ledger.detect("payment.webhook", {"amount": 2}, key="f").id
        ledger.report(failed, False, error_type="TimeoutError", error="timed out")
        succeeded = ledger.detect("sync.record", key="s").id
        ledger.report(succeeded, True)
        dead = ledger.detect("sync.record", key="d").id
        ledger.report(dead, False, error="boom")
        ledger.bury(dead, actor="setup")
        ledger.annotate(failed, "looked at it", author="ops")
    return {"PENDING": pending, "FAILED": failed, "SUCCEEDED": succeeded, "DEAD": dead}


def expect_error(capsys: pytest.CaptureFixture[str], db_url: str, args: list[str], *, code: int,
                 mentions: tuple[str, ...]) -> str:
    """Run the CLI, check the error contract, and return stderr."""
    before = dump(db_url)
    outcome = run_main(capsys, "--db", db_url, *args)
    assert outcome.code == code, (args, outcome)
    assert "Traceback" not in outcome.err and "internal error" not in outcome.err
    assert outcome.out == "", "errors go to stderr only"
    if code == 1:
        lines = [line for line in outcome.err.splitlines() if line.strip()]
        assert lines[0].startswith("error ("), outcome.err
    for word in mentions:
        assert word.lower() in outcome.err.lower(), (word, outcome.err)
    assert dump(db_url) == before, "nothing may be written"
    return outcome.err


BIG = json.dumps({"blob": "x" * (DEFAULT_MAX_PAYLOAD_BYTES + 10)})

# (arguments, exit code, words the message must contain); ids are filled in from ``seeded``
CASES = [
    (["show", "999999"], 1, ("999999",)),
    (["report", "999999", "--ok"], 1, ("999999",)),
    (["annotate", "999999", "note"], 1, ("999999",)),
    (["revive", "999999"], 1, ("999999",)),
    (["bury", "999999"], 1, ("999999",)),
    (["report", "{SUCCEEDED}", "--ok"], 1, ("InvalidTransition", "SUCCEEDED")),
    (["revive", "{FAILED}"], 1, ("InvalidTransition", "DEAD")),
    (["bury", "{PENDING}"], 1, ("InvalidTransition", "FAILED")),
    (["revive", "{DEAD}", "--reason", ""], 1, ("reason",)),
    (["report", "{FAILED}"], 2, ("--ok", "--failed")),
    (["detect", "a.b", "--at", "2026-01-02T04:00:00"], 2, ("time zone",)),
    (["detect", "a.b", "--payload", "[1, 2]"], 2, ("JSON object",)),
    (["detect", "a.b", "--payload", "{nope"], 2, ("JSON",)),
    (["detect", "a.b", "--payload", BIG], 1, ("payload",)),
    (["detect", "bad type!"], 1, ("event_type",)),
    (["events", "--state", "LOST"], 2, ("LOST",)),
    (["show", "abc"], 2, ("abc",)),
    (["import", "{MISSING}"], 1, ("no such file",)),
    (["import", "--legacy", "{MISSING}"], 1, ("no such file",)),
    (["export", "-o", "{NODIR}"], 1, ("no such file",)),
    (["no-such-command"], 2, ("no-such-command",)),
]


@pytest.mark.parametrize(("args", "code", "mentions"), CASES, ids=lambda v: str(v)[:40])
def test_bad_input_is_one_clear_error_and_writes_nothing(
    db_url: str, seeded: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str], *,
    args: list[str], code: int, mentions: tuple[str, ...],
) -> None:
    names = {**{k: str(v) for k, v in seeded.items()}, "MISSING": str(tmp_path / "missing.jsonl"),
             "NODIR": str(tmp_path / "no" / "such" / "dir.jsonl")}
    filled = [a.format(**names) if a.startswith("{") and a.endswith("}") and a[1:-1] in names else a
              for a in args]
    expect_error(capsys, db_url, filled, code=code, mentions=mentions)


def test_a_malformed_import_line_refuses_the_whole_file(
    db_url: str, seeded: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"event_type": "good.one", "key": "g1"}\n{"event_type": "x", \n'
                      '{"event_type": "good.two", "payload": [1]}\n')
    err = expect_error(capsys, db_url, ["import", str(source)], code=1, mentions=("line 2", "line 3"))
    assert "nothing was written" in err and "--skip-invalid" in err


@pytest.mark.parametrize("args", [["events"], ["detect", "a.b"], ["import", "-"]])
def test_a_seed_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = tmp_path / "seed.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE event_detected (id INTEGER PRIMARY KEY, event_type TEXT)")
        conn.execute("INSERT INTO event_detected VALUES (1, 'x')")
    conn.close()
    err = expect_error(capsys, f"sqlite:///{path}", args, code=1, mentions=("SchemaError", "import --legacy"))
    assert len(err.strip().splitlines()) == 1


def test_an_unrelated_sqlite_file_is_not_written_by_inspection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    for args in (["events"], ["show", "1"], ["export"], ["verify"], ["detect", "x"], ["db", "upgrade"]):
        expect_error(
            capsys, f"sqlite:///{path}", args, code=1, mentions=("SchemaError", "not a failure-aware")
        )
    assert table_names(path) == {"invoices"}


@pytest.mark.parametrize("url", [
    "nonsense",
    "mysql://root@localhost/x",
    "sqlite://",
    "postgresql://nobody@127.0.0.1:1/nothing",
])
def test_a_wrong_url_is_one_clear_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_main(capsys, "--db", url, "events")
    assert outcome.code == 1, outcome
    # An unreachable server is the StorageError that may pass (a worker would wait for it).
    kind = "DatabaseUnavailable" if url.startswith("postgresql") else "StorageError"
    assert outcome.err.startswith(f"error ({kind})") and "Traceback" not in outcome.err
    assert outcome.out == ""


def test_the_env_url_is_used_and_a_wrong_one_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAILURE_AWARE_DB", "nonsense://")
    outcome = run_main(capsys, "events")
    assert outcome.code == 1 and "nonsense" in outcome.err


# -- inspection writes nothing ------------------------------------------------------------------------------
READ_ONLY = [
    ["events"], ["events", "--json"], ["events", "--state", "FAILED", "--type", "payment.webhook"],
    ["show", "{FAILED}"], ["show", "{FAILED}", "--json"],
    ["export"], ["export", "--type", "sync.record"],
    ["verify"], ["verify", "--json"],
    ["db", "version"], ["db", "version", "--json"],
    ["revive", "--since", "1h", "--dry-run"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_inspection_commands_write_nothing(
    db_url: str, seeded: dict[str, int], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    filled = [str(seeded[a[1:-1]]) if a.startswith("{") else a for a in args]
    before = dump(db_url)
    outcome = run_main(capsys, "--db", db_url, *filled)
    assert outcome.code == 0, outcome
    assert outcome.out
    if "--json" in args:
        json.loads(outcome.out)
    assert dump(db_url) == before


@pytest.mark.parametrize("args", [["show", "1"], ["export"], ["verify"], ["db", "version"],
                                  ["revive", "--since", "1h", "--dry-run"]], ids=" ".join)
def test_inspection_never_creates_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    outcome = run_main(capsys, "--db", url, *args)
    assert outcome.code == 1 and "no failure-aware database" in outcome.err
    assert sqlite_file(url) is not None and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "said"), [
    (["events"], "no events recorded yet\n"), (["events", "--json"], "[]\n"),
    (["clusters"], "no clusters (run `failure-aware correlate` to compute them from history)\n"),
    (["clusters", "--json"], "[]\n"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_listings_of_a_missing_database_are_empty_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    outcome = run_main(capsys, "--db", url, *args)
    assert (outcome.code, outcome.out) == (0, said), outcome
    assert list(tmp_path.iterdir()) == []
