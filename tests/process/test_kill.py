"""A worker killed with SIGKILL mid-attempt: its claim becomes stuck, `recover` closes it, and the killed
worker's token can no longer record anything (SPEC section 3: fenced, leased claims)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from failure_aware import Ledger, Outcome, StaleClaim, State
from failure_aware.config import Config
from failure_aware.domain.records import Claim
from failure_aware.domain.timeutil import from_us, utc_now
from failure_aware.storage.tables import attempt, event_state, transition

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 1.5

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def history_size(ledger: Ledger) -> tuple[int, int]:
    with ledger.store.read() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(attempt)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(transition)).scalar_one())


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the worker exited ({proc.returncode}) before its handler started: {err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the worker's handler never started")
        time.sleep(0.02)


def test_killed_worker_leaves_a_stuck_claim_that_recover_closes(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with Ledger(db_url, config=Config()) as ledger:
        event = ledger.detect("payment.webhook", {"amount": 12}, key="evt_kill")
        proc = subprocess.Popen(
            [sys.executable, "-m", "failure_aware", "--db", db_url, "worker", "--once", "--quiet",
             "--handler", "tests.handlers_fixture:block", "--lease", f"{LEASE_SECONDS}s"],
            cwd=REPO, env={**os.environ, "FA_TEST_MARKER": str(marker)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            wait_for(marker, proc)
            with ledger.store.read() as conn:
                held = conn.execute(sa.select(event_state).where(event_state.c.event_id == event.id)).one()
        finally:
            proc.send_signal(signal.SIGKILL)  # mid-attempt: the handler is sleeping in its claim
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL

        assert held.state == State.IN_FLIGHT and held.claim_token
        lease_expires_at = from_us(held.lease_expires_at_us)
        assert ledger.get(event.id).state is State.IN_FLIGHT  # nothing happened behind our back
        time.sleep(max(0.0, (lease_expires_at - utc_now()).total_seconds()) + 0.05)

        stuck = ledger.health().overall
        assert stuck.stuck_claims == 1 and stuck.oldest_stuck is not None
        assert stuck.oldest_stuck.event_id == event.id
        assert [e.id for e in ledger.recover(dry_run=True)] == [event.id]

        [result] = ledger.recover()
        assert result.event_id == event.id and result.attempt.outcome is Outcome.ABANDONED
        assert result.state is State.FAILED and result.attempt.error_type == "LeaseExpired"
        assert held.claimed_by in (result.attempt.error or "")
        assert ledger.get(event.id).state is State.FAILED
        assert ledger.health().overall.stuck_claims == 0

        before = history_size(ledger)
        killed = Claim(event=ledger.get(event.id), token=held.claim_token, worker=held.claimed_by,
                       claimed_at=from_us(held.claimed_at_us), lease_expires_at=lease_expires_at,
                       attempt_number=1)
        with pytest.raises(StaleClaim, match="no longer holds it"):
            ledger.finish(killed, True)
        assert history_size(ledger) == before
        assert [(a.number, a.outcome) for a in ledger.show(event.id).attempts] == [(1, Outcome.ABANDONED)]
        assert ledger.get(event.id).state is State.FAILED
