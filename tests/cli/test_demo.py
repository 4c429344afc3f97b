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
    monkeypatch.chdir(tmp_path)  # without --db: the demo's own ./failure-aware-demo.db
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
    assert not (tmp_path / "failure-aware.db").exists()  # the default ledger is left alone
    with Ledger(f"sqlite:///{tmp_path / 'failure-aware-demo.db'}", readonly=True) as ledger:
        counts = ledger.state_counts()
        assert counts[State.SUCCEEDED] > 50 and counts[State.DEAD] >= 1
        assert any(c.event_type == "payment.webhook" for c in ledger.clusters())
        # The gateway outage fails payments and e-mails together: one incident holds both.
        assert any({"payment.webhook", "email.send"} <= set(i.event_types) for i in ledger.incidents())
        assert ledger.verify().ok
        dead = ledger.events(state=State.DEAD, limit=100)
        assert any(ledger.show(e.id).annotations for e in dead)


def _run_demo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def _summary(out: str) -> dict[str, tuple[int, str]]:
    """The closing summary's rows: what -> (count, detail)."""
    part = out[out.index("summary of this run"):]
    rows = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3 and cells[1].isdigit():
            rows[cells[0]] = (int(cells[1]), cells[2])
    return rows


def test_the_demo_run_twice_does_not_mix_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAILURE_AWARE_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    code, first, _ = _run_demo(["demo"], capsys)
    assert code == 0 and "was replaced" not in first
    with Ledger(f"sqlite:///{tmp_path / 'failure-aware-demo.db'}", readonly=True) as ledger:
        counts_first = ledger.state_counts()
        attempts_first = ledger.attempt_totals()
    code, second, _ = _run_demo(["demo"], capsys)
    assert code == 0
    assert "database: sqlite:///failure-aware-demo.db (the previous demo run's file was replaced" in second
    with Ledger(f"sqlite:///{tmp_path / 'failure-aware-demo.db'}", readonly=True) as ledger:
        assert ledger.state_counts() == counts_first  # the second run's database holds the second run only
        assert ledger.attempt_totals() == attempts_first
        assert ledger.verify().ok
    # The summary lists what it counts, and says the same both times (it counts one run).
    summary = _summary(second)
    assert summary == _summary(first)
    assert set(summary) == {"events", "attempts", "webhook deliveries", "clusters", "incidents", "notes"}
    assert summary["events"][0] == sum(counts_first.values())
    assert summary["attempts"][0] == sum(attempts_first.values())
    for state, n in counts_first.items():
        if n:
            assert f"{n} {state.value}" in summary["events"][1]
    assert summary["notes"][0] == 2 and summary["incidents"][0] >= 1


def test_the_demo_refuses_a_database_that_holds_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.detect("order.sync", {"n": 1}, key="k1")
    before = path.read_bytes()
    code, out, err = _run_demo(["--db", f"sqlite:///{path}", "demo"], capsys)
    assert code == 1 and out == ""
    assert "already holds 1 event(s): a demo run there would mix with them" in err
    assert "Traceback" not in err
    assert path.read_bytes() == before  # nothing written


def test_the_demo_leaves_a_foreign_file_of_its_name_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    foreign = tmp_path / "failure-aware-demo.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (x TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    code, _, err = _run_demo(["demo"], capsys)
    assert code == 1 and "is not a failure-aware database, so the demo does not replace it" in err
    assert foreign.read_bytes() == before
