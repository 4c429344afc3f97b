"""Many worker processes over one queue: every event runs exactly once, nothing is lost or doubled.

PostgreSQL: 8 processes over 5,000 due events (claims with ``FOR UPDATE SKIP LOCKED``); SQLite: 2 processes
over 5,000 (short ``BEGIN IMMEDIATE`` transactions). (20,000 before workers claimed one event per free
slot, with a transaction per attempt instead of per batch of up to 50: the same count took 4-8x longer.)
Each process is the real CLI, ``python -m failure_aware worker --once``, and its handler appends each event
id to a file of its own, so the proof does not rely on the ledger's own records: the files must be
disjoint and cover every id once.

``FA_TEST_CONCURRENCY_EVENTS`` sets another number of events (for a quick local run); CI uses the default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.domain.timeutil import format_time, utc_now
from failure_aware.storage.tables import attempt

REPO = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("FA_TEST_CONCURRENCY_EVENTS", "5000"))
PROCESSES = {"postgresql": 8, "sqlite": 2}
TIMEOUT_SECONDS = 900
MILLISECOND = timedelta(milliseconds=1)


def test_workers_in_parallel_run_every_event_exactly_once(
    backend: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        # Detected a millisecond apart, as events arriving over time are (thousands detected in the same
        # microsecond would make PostgreSQL sort them all on every claim: see core/claims.py).
        start = utc_now() - timedelta(hours=1)
        imported = ledger.import_events(
            {"event_type": "load.test", "key": f"k{i}", "detected_at": format_time(start + i * MILLISECOND)}
            for i in range(EVENTS)
        )
        assert imported.imported == EVENTS
        ids = {e.id for e in ledger.due(limit=EVENTS)}
        assert len(ids) == EVENTS

        logs = tmp_path / "logs"
        logs.mkdir()
        env = {**os.environ, "FA_TEST_RECORD_DIR": str(logs)}
        command = [sys.executable, "-m", "failure_aware", "--db", db_url, "worker", "--once", "--quiet",
                   "--json", "--handler", "tests.handlers_fixture:record"]
        started = time.monotonic()
        procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(PROCESSES[backend])]
        try:
            outputs = [p.communicate(timeout=TIMEOUT_SECONDS) for p in procs]
        finally:
            for proc in procs:  # never leave a worker running after a failure or timeout
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = time.monotonic() - started
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
        summaries = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]

        # The handlers' own records: disjoint per process, every id exactly once.
        per_process = [Counter(int(line) for line in f.read_text().split()) for f in logs.iterdir()]
        seen: Counter[int] = sum(per_process, Counter())
        assert set(seen) == ids, "some events never ran"
        assert max(seen.values()) == 1, "some events ran twice"
        assert len(per_process) >= 2, "the work was not shared between processes"

        # The ledger agrees: one succeeded attempt per event, nothing else.
        assert sum(s["succeeded"] for s in summaries) == EVENTS
        assert all(s["failed"] == s["dead"] == s["lost"] == s["skipped"] == 0 for s in summaries)
        counts = ledger.state_counts()
        assert counts[State.SUCCEEDED] == EVENTS and sum(counts.values()) == EVENTS
        with ledger.store.read() as conn:
            total, distinct, succeeded = conn.execute(sa.select(
                sa.func.count(), sa.func.count(sa.distinct(attempt.c.event_id)),
                sa.func.count().filter(attempt.c.outcome == "succeeded"),
            )).one()
        assert (total, distinct, succeeded) == (EVENTS, EVENTS, EVENTS)
        report = ledger.verify()
        assert report.ok, report.problems[:5]

    with capsys.disabled():
        print(f"\n[{backend}] {len(procs)} worker processes, {EVENTS} events: {wall:.1f}s wall "
              f"(with process start-up), {EVENTS / wall:.0f} attempts/s; per process: "
              f"{sorted(s['succeeded'] for s in summaries)}")
