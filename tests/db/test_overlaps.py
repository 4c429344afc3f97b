"""Concurrent operations that overlap both succeed (SPEC section 14), on SQLite and PostgreSQL:

- an import and a ``detect`` of one of its keys that commits while the import runs: the key is skipped
  and counted, the rest is imported;
- two bulk revives of the same dead events at once: each event is revived once, the two sets are
  disjoint and together they are all of them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

from conftest import FakeClock

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy
from failure_aware.domain.timeutil import format_time, to_us
from failure_aware.events import recording


def test_an_import_skips_a_key_a_concurrent_detect_commits_meanwhile(
    ledger: Ledger, clock: FakeClock
) -> None:
    detected = format_time(clock.now - timedelta(minutes=5))
    records = [{"event_type": "sync.record", "key": f"k{n}", "detected_at": detected} for n in range(500)]
    reports: list[object] = []
    with ledger.store.write() as conn:  # a detect of k250, not yet committed when the import starts
        recording.detect(conn, event_type="sync.record", key="k250", payload_json="{}",
                         detected_at_us=to_us(clock.now), now_us=to_us(clock.now), actor="system")
        importer = threading.Thread(target=lambda: reports.append(ledger.import_events(records)))
        importer.start()
        time.sleep(0.5)  # the import looks its keys up now (k250 is not visible yet), then waits on it
    importer.join(60)
    assert not importer.is_alive()
    [report] = reports
    assert report.imported == 499 and report.skipped_existing == 1  # type: ignore[attr-defined]
    assert len(ledger.events(limit=1000)) == 500 and ledger.verify().ok


def test_two_bulk_revives_at_once_revive_each_event_once(db_url: str) -> None:
    clock = FakeClock()
    config = Config(policies=PolicySet(default=RetryPolicy(max_attempts=1)))
    with Ledger(db_url, config=config, clock=clock) as ledger:
        since = clock.now - timedelta(minutes=10)
        failed = {"at": format_time(clock.now - timedelta(minutes=1)), "outcome": "failed", "error": "no"}
        ledger.import_events({"event_type": "job.run", "key": f"d{n}", "attempts": [failed],
                              "detected_at": format_time(clock.now - timedelta(minutes=5))}
                             for n in range(100))  # one attempt allowed: all DEAD
        ids = sorted(e.id for e in ledger.events(state=State.DEAD, limit=1000))
        assert len(ids) == 100
        revived: list[list[int]] = []
        errors: list[BaseException] = []
        go = threading.Barrier(2)

        def revive() -> None:
            try:
                go.wait(10)
                revived.append(ledger.revive_dead(since=since, actor="ops"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=revive) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [] and len(revived) == 2
        counted = Counter(revived[0] + revived[1])
        assert sorted(counted) == ids and set(counted.values()) == {1}  # disjoint, all of them
        assert len(ledger.events(state=State.PENDING, limit=1000)) == 100 and ledger.verify().ok
