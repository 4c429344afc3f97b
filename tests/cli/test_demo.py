"""`failure-aware demo` runs its workload end to end and leaves a consistent database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from failure_aware import Ledger, State
from failure_aware.cli import main


def test_demo_runs_and_leaves_a_consistent_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default: ./failure-aware.db
    monkeypatch.delenv("FAILURE_AWARE_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    with pytest.raises(SystemExit) as done:
        main(["demo"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for part in ("retries are scheduled", "a dead letter", "correlate", "incidents", "health", "real HTTP",
                 "got through on a later attempt", "answered 503", "retry_after: 120", "answered 200"):
        assert part in out
    posts = re.search(r"the receiver got (\d+) POST\(s\); (\d+) had a valid signature, 0 were refused", out)
    assert posts is not None and int(posts.group(1)) == int(posts.group(2)) > 50
    with Ledger(f"sqlite:///{tmp_path / 'failure-aware.db'}", readonly=True) as ledger:
        counts = ledger.state_counts()
        assert counts[State.SUCCEEDED] > 50 and counts[State.DEAD] >= 1
        assert any(c.event_type == "payment.webhook" for c in ledger.clusters())
        # The gateway outage fails payments and e-mails together: one incident holds both.
        assert any({"payment.webhook", "email.send"} <= set(i.event_types) for i in ledger.incidents())
        assert ledger.verify().ok
        dead = ledger.events(state=State.DEAD, limit=100)
        assert any(ledger.show(e.id).annotations for e in dead)
