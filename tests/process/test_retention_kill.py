"""An archive killed with SIGKILL mid-removal (SPEC 15): the database stays consistent and ``verify`` clean,
nothing has left that is not in the synced file, and a rerun (to a new file) finishes the job."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.storage.tables import archive

REPO = Path(__file__).resolve().parents[2]
EVENTS = 1500
HORIZON = "2026-01-01T00:00:00Z"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def old_records() -> list[dict[str, object]]:
    """Finished events of 2025 (plus a few failed ones that must stay)."""
    records: list[dict[str, object]] = []
    for n in range(EVENTS):
        at = f"2025-06-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        attempt = {"at": at, "outcome": "succeeded"} if n % 10 else {"at": at, "outcome": "failed",
                                                                   "error_type": "E"}
        records.append({"event_type": "pay.webhook", "key": f"k{n}", "detected_at": at, "payload": {"n": n},
                        "attempts": [attempt]})
    return records


def keys_in(path: Path) -> set[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        lines = [json.loads(line) for line in stream]
    assert lines[-1]["kind"] == "archive_manifest"  # complete: the manifest is the last line written
    return {str(r["key"]) for r in lines if "kind" not in r}


def archived_records(ledger: Ledger) -> int:
    with ledger.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(archive)).scalar_one())


def test_an_archive_killed_mid_run_leaves_a_clean_database_and_a_rerun_finishes(
    db_url: str, tmp_path: Path
) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.import_events(old_records())
        before = ledger.verify()
        assert before.ok, before.problems
        everything = {str(r["key"]) for r in ledger.export_events() if "kind" not in r}
        first = tmp_path / "first.jsonl.gz"
        proc = subprocess.Popen(
            [sys.executable, "-m", "failure_aware", "--db", db_url, "archive", "--before", HORIZON,
             "--to", str(first), "--chunk", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        try:
            while archived_records(ledger) < 5:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "the archive never started removing"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        remaining = {str(r["key"]) for r in ledger.export_events() if "kind" not in r}
        removed = everything - remaining
        finished = {f"k{n}" for n in range(EVENTS) if n % 10}
        assert removed and removed < finished  # killed in the middle of the removal
        assert removed <= keys_in(first)  # nothing left that is not in the synced file
        killed = ledger.verify()
        assert killed.ok, killed.problems
        assert (killed.digest, killed.digest_rows) == (before.digest, before.digest_rows)

        second = tmp_path / "second.jsonl"
        rerun = ledger.archive(_horizon(), to=second)
        assert rerun.removed_events == len(finished) - len(removed)
        left = {str(r["key"]) for r in ledger.export_events() if "kind" not in r}
        assert left == everything - finished  # only the failed ones stay
        done = ledger.verify()
        assert done.ok and done.digest == before.digest, done.problems

    # Both files together bring back every archived event.
    with Ledger(f"sqlite:///{tmp_path / 'restored.db'}", config=Config()) as restored:
        restored.import_file(first)
        restored.import_file(second)
        assert {str(r["key"]) for r in restored.export_events() if "kind" not in r} == finished


def _horizon() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)
