"""The terminal experience of long and waiting commands (issue 11): progress with rate and ETA on a
terminal's stderr (and nothing in a pipe), the notice of a SQLite write lock held by another process, one
time format on the screen, and what ``import --legacy`` says at its end."""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import REPO_ROOT, invoke, run_main
from rich import filesize
from rich.console import Console

from failure_aware import Ledger
from failure_aware.cli.context import LOCK_WAIT_MESSAGE
from failure_aware.cli.progress import Progress

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def write_jsonl(path: Path, count: int) -> Path:
    """``count`` events, every third with two failures a second apart (bursts for correlate)."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            at = START + timedelta(seconds=n)
            record: dict[str, Any] = {"event_type": "order.sync", "key": f"k{n}",
                                      "detected_at": at.isoformat(), "payload": {"n": n}}
            if n % 3 == 0:
                record["attempts"] = [
                    {"at": (at + timedelta(seconds=1)).isoformat(), "outcome": "failed",
                     "error_type": "TimeoutError", "error": f"upstream timed out after {n % 7}s"},
                    {"at": (at + timedelta(seconds=2)).isoformat(), "outcome": "failed",
                     "error_type": "TimeoutError", "error": "upstream timed out after 30s"},
                ]
            out.write(json.dumps(record) + "\n")
    return path


# -- progress ------------------------------------------------------------------------------------------
def test_progress_on_a_forced_terminal_shows_phases_with_rate_and_eta(tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)
    with Ledger(f"sqlite:///{tmp_path / 'p.db'}") as ledger, Progress(console) as progress:
        assert progress.enabled
        report = ledger.import_file(write_jsonl(tmp_path / "in.jsonl", 3000), on_progress=progress)
    assert report.imported == 3000
    drawn = screen.getvalue()
    size = (tmp_path / "in.jsonl").stat().st_size
    assert "reading and checking" in drawn and "writing" in drawn
    assert f"{filesize.decimal(size)}/{filesize.decimal(size)}" in drawn  # the file's size: the read's total
    assert "3,000/3,000 events" in drawn
    assert re.search(r"[\d,]+ events/s", drawn) and re.search(r"[\d.]+ [kM]?B/s", drawn)  # rates
    assert "ETA" in drawn


def test_progress_is_silent_when_stderr_is_not_a_terminal() -> None:
    screen = io.StringIO()
    progress = Progress(Console(file=screen))  # a file, not a terminal
    assert not progress.enabled
    progress("write", 10, 100)
    progress.close()
    assert screen.getvalue() == ""


def test_a_gzip_import_reports_compressed_bytes_against_the_file_size(tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "in.jsonl", 5000)
    packed = tmp_path / "in.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    size = packed.stat().st_size
    assert size < plain.stat().st_size // 2  # so counting the lines' bytes would pass the total
    reads: list[tuple[int, int | None]] = []

    def record(phase: str, done: int, total: int | None) -> None:
        if phase == "read":
            reads.append((done, total))

    with Ledger(f"sqlite:///{tmp_path / 'p.db'}") as ledger:
        assert ledger.import_file(packed, on_progress=record).imported == 5000
    assert len(reads) > 2 and all(total == size and 0 <= done <= size for done, total in reads)
    assert [done for done, _ in reads] == sorted(done for done, _ in reads)
    assert reads[-1] == (size, size)


def test_library_calls_report_their_phases_with_totals_from_counters(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []

    def record(phase: str, done: int, total: int | None) -> None:
        calls.append((phase, done, total))

    with Ledger(f"sqlite:///{tmp_path / 'p.db'}") as ledger:
        ledger.import_file(write_jsonl(tmp_path / "in.jsonl", 2500), on_progress=record)
        size = (tmp_path / "in.jsonl").stat().st_size
        assert ("read", size, size) == calls[[c[0] for c in calls].index("write") - 1]
        assert calls[-1] == ("write", 2500, 2500)
        failures = 2 * len(range(0, 2500, 3))
        for call, phase, total in ((lambda: ledger.correlate(rebuild=True, on_progress=record), "correlate",
                                    failures),
                                   (lambda: ledger.verify(on_progress=record), "verify", 2500)):
            calls.clear()
            call()
            ours = [c for c in calls if c[0] == phase]
            assert ours and ours[-1] == (phase, total, total)
            assert [c[1] for c in ours] == sorted(c[1] for c in ours)  # it only moves forward
        assert calls[-1] == ("clusters", failures, failures)  # verify reads the failures again
        calls.clear()
        assert sum(1 for _ in ledger.export_events(on_progress=record)) == 2500
        assert calls[-1] == ("export", 2500, 2500) and calls[0] == ("export", 1000, 2500)
        calls.clear()
        assert ledger.import_events([{"event_type": "a.b"}] * 3, on_progress=record).imported == 3
        assert ("check", 3, 3) in calls


def _in_a_terminal(args: list[str], cwd: Path, **extra: str) -> tuple[int, str, str]:
    """Run ``args`` with stderr on a pseudo-terminal and stdout in a pipe: (code, stdout, terminal)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("FAILURE_AWARE_DB", "NO_COLOR")}
    env.update(TERM="xterm", COLUMNS="150", PYTHONPATH=str(REPO_ROOT), **extra)
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                               env=env)
    os.close(slave)
    screen: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other side closed
                return
            if not data:
                return
            screen.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        reader.join(timeout=10)
        os.close(master)
    return process.returncode, out.decode(), b"".join(screen).decode(errors="replace")


def test_a_real_terminal_gets_progress_on_stderr_and_stdout_stays_clean(db_url: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", 3000)
    fa = [sys.executable, "-m", "failure_aware", "--db", db_url]
    code, out, screen = _in_a_terminal([*fa, "import", str(source), "--json"], tmp_path)
    assert code == 0, screen
    assert json.loads(out)["imported"] == 3000  # stdout: the JSON document and nothing else
    assert "reading and checking" in screen and "writing" in screen and "3,000/3,000 events" in screen
    assert re.search(r"[\d,]+ events/s", screen)
    code, out, screen = _in_a_terminal([*fa, "correlate", "--rebuild"], tmp_path)
    assert code == 0 and "correlating" in screen and re.search(r"[\d,]+ failures/s", screen)
    assert out.startswith("correlate (rebuild")
    code, out, screen = _in_a_terminal([*fa, "verify", "--json"], tmp_path)
    assert code == 0 and json.loads(out)["ok"] and "verifying" in screen and "3,000/3,000 events" in screen
    code, out, screen = _in_a_terminal([*fa, "export", "-o", str(tmp_path / "out.jsonl")], tmp_path)
    assert code == 0 and "exporting" in screen and "3,000/3,000 events" in screen and out == ""
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3000
    code, out, screen = _in_a_terminal([*fa, "export"], tmp_path)  # stdout a pipe: progress on the terminal
    assert code == 0 and len(out.splitlines()) == 3000 and "exporting" in screen
    code, _, screen = _in_a_terminal([*fa, "verify"], tmp_path, FAILURE_AWARE_PROGRESS="0")
    assert code == 0 and "verifying" not in screen


def test_in_a_pipe_long_commands_print_nothing_extra(db_url: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", 1500)
    imported = invoke(db_url, "import", str(source), "--json")
    assert imported.exit_code == 0 and imported.stderr == ""
    assert json.loads(imported.stdout)["imported"] == 1500
    for args in (["correlate", "--rebuild", "--json"], ["verify", "--json"]):
        done = invoke(db_url, *args)
        assert done.exit_code == 0 and done.stderr == "", args
        json.loads(done.stdout)
    exported = invoke(db_url, "export")
    assert exported.exit_code == 0 and exported.stderr == ""
    assert [json.loads(line)["key"] for line in exported.stdout.splitlines()][:2] == ["k0", "k1"]


# -- the SQLite write lock -----------------------------------------------------------------------------
def test_a_write_waiting_for_the_sqlite_write_lock_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    Ledger(url).close()  # the schema, so the command's only wait is the lock below
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    env = {k: v for k, v in os.environ.items() if k != "FAILURE_AWARE_DB"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "failure_aware", "--db", url, "detect", "order.sync", "--key", "k1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        told = process.stderr.readline()  # blocks until the command says it waits (the lock is still held)
        assert told == LOCK_WAIT_MESSAGE + "\n"
        time.sleep(0.5)
        assert process.poll() is None  # still waiting, not failed
        holder.execute("COMMIT")
        out, rest = process.communicate(timeout=60)
    finally:
        holder.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert rest == ""  # said once
    assert json.loads(out)["key"] == "k1"  # stdout: the JSON document alone


def test_no_notice_when_the_lock_is_free(tmp_path: Path) -> None:
    told: list[int] = []
    with Ledger(f"sqlite:///{tmp_path / 'free.db'}", on_lock_wait=lambda: told.append(1)) as ledger:
        for n in range(20):
            ledger.detect("order.sync", key=f"k{n}")
    assert told == []


def test_the_notice_comes_in_process_too_and_the_write_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    told: list[float] = []
    with Ledger(f"sqlite:///{path}", on_lock_wait=lambda: told.append(time.monotonic())) as ledger:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
        started = time.monotonic()
        release.start()
        try:
            event = ledger.detect("order.sync", key="k1")
        finally:
            release.join()
            holder.close()
        assert event.key == "k1" and len(told) == 1
        assert 0.2 <= told[0] - started < 1.0  # after the first quarter second, before the lock came free


def test_a_write_that_never_gets_the_lock_fails_cleanly_after_the_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from failure_aware.domain.errors import DatabaseUnavailable
    from failure_aware.storage import engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 600)  # instead of 30 s
    path = tmp_path / "held.db"
    told: list[int] = []
    with Ledger(f"sqlite:///{path}", on_lock_wait=lambda: told.append(1)) as ledger:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseUnavailable, match="database is locked"):
                ledger.detect("order.sync", key="k1")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert told == [1]
        assert ledger.detect("order.sync", key="k1").key == "k1"  # the connection is still good
        assert ledger.state_counts()[ledger.get(1).state] == 1


# -- one time format -----------------------------------------------------------------------------------
def test_reasons_and_errors_show_times_as_the_tables_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    url = f"sqlite:///{tmp_path / 't.db'}"
    db = ["--db", url]
    assert run_main(capsys, *db, "detect", "order.sync", "--key", "k1").code == 0
    assert run_main(capsys, *db, "report", "1", "--failed", "--error", "boom").code == 0
    with Ledger(url, readonly=True) as ledger:
        event = ledger.get(1)
        assert event.next_retry_at is not None
        retry = event.next_retry_at.strftime("%Y-%m-%d %H:%M:%SZ")
    shown = run_main(capsys, *db, "show", "1")
    assert f"next retry {retry}" in shown.out  # the header
    assert f"retry from {retry}" in shown.out  # the transition's reason, stored as RFC 3339
    assert not RFC3339.search(shown.out)
    too_early = run_main(capsys, *db, "report", "1", "--failed")
    assert too_early.code == 1 and f"may be retried from {retry}" in too_early.err
    assert not RFC3339.search(too_early.err)
    stored = run_main(capsys, *db, "show", "1", "--json")  # JSON keeps RFC 3339 with its precision
    assert RFC3339.search(stored.out)


# -- import --legacy -----------------------------------------------------------------------------------
def _legacy(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE event_detected (id INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL,
            event_payload TEXT NOT NULL, detected_at TEXT NOT NULL, sync_status TEXT NOT NULL,
            retry_count INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_retry_at TEXT, event_note TEXT);
        CREATE TABLE failure_cluster (id INTEGER PRIMARY KEY, event_type TEXT);
        CREATE TABLE domain_state (id INTEGER PRIMARY KEY, event_id INTEGER);
        INSERT INTO failure_cluster (event_type) VALUES ('EVENT_DETECTED'), ('EVENT_DETECTED');
        INSERT INTO event_detected
            (event_type, event_payload, detected_at, sync_status, retry_count, last_error)
            VALUES ('EVENT_DETECTED', '{}', '2026-01-02T04:45:54+00:00', 'DEAD', 3, 'Max retries exceeded');
    """)
    conn.commit()
    conn.close()
    return path


def test_import_legacy_names_what_it_left_behind_and_what_to_do_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _legacy(tmp_path / "seed.db")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    done = run_main(capsys, "--db", url, "import", "--legacy", str(source))
    assert done.code == 0
    lines = done.out.splitlines()
    assert lines[1:4] == [
        "not carried over from the legacy database:",
        "  domain_state (0 row(s)): not part of failure-aware's model: not imported",
        "  failure_cluster (2 row(s)): recomputed by `failure-aware correlate`, not copied",
    ]
    assert lines[-1].startswith(f"next: run `failure-aware --db {url} correlate`")
    again = run_main(capsys, "--db", url, "import", "--legacy", str(source), "--json")
    assert again.json()["not_carried"][1] == {"table": "failure_cluster", "rows": 2,
                                              "why": "recomputed by `failure-aware correlate`, not copied"}
    shown = run_main(capsys, "--db", url, "show", "1", "--json").json()
    assert [a["error"] for a in shown["attempts"]] == ["(not kept by the legacy database)"] * 2 + [
        "Max retries exceeded"]


def test_import_legacy_of_a_bad_file_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new.db"
    missing = run_main(capsys, "--db", f"sqlite:///{target}", "import", "--legacy", str(tmp_path / "nope.db"))
    assert missing.code == 1 and "no such file" in missing.err and "Traceback" not in missing.err
    assert not target.exists()
