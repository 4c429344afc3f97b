"""The commands that run work: run, retry --due, worker, recover (in-process, through the error boundary)."""

from __future__ import annotations

import json
import time

import pytest
from cli_support import Outcome, dump, run_main

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.domain.states import State


@pytest.fixture
def filled(db_url: str) -> dict[str, int]:
    """Two PENDING events of type a.job, one of b.job, and one FAILED (not due for 10 s) of a.job."""
    with Ledger(db_url, config=Config()) as ledger:
        ids = {name: ledger.detect(t).id for name, t in (("a1", "a.job"), ("a2", "a.job"), ("b1", "b.job"))}
        ids["failed"] = ledger.detect("a.job").id
        ledger.report(ids["failed"], False, error_type="TimeoutError", error="timed out")
    return ids


OK = "handlers_fixture:ok"
Capsys = pytest.CaptureFixture[str]
Filled = dict[str, int]


def state_of(db_url: str, event_id: int) -> State:
    with Ledger(db_url, config=Config(), readonly=True) as ledger:
        return ledger.get(event_id).state


def json_lines(outcome: Outcome) -> list[dict[str, object]]:
    return [json.loads(line) for line in outcome.out.splitlines()]  # every line of stdout is JSON


def test_retry_needs_due(capsys: Capsys, db_url: str, filled: Filled) -> None:
    before = dump(db_url)
    done = run_main(capsys, "--db", db_url, "retry", "--handler", OK)
    assert done.code == 2 and "--due" in done.err and "Traceback" not in done.err
    assert dump(db_url) == before


def test_retry_dry_run_lists_what_is_due_and_writes_nothing(
    capsys: Capsys, db_url: str, filled: Filled
) -> None:
    before = dump(db_url)
    listed = run_main(capsys, "--db", db_url, "retry", "--due", "--dry-run", "--json")
    assert listed.code == 0
    due = sorted(e["id"] for e in json.loads(listed.out))
    assert due == sorted([filled["a1"], filled["a2"], filled["b1"]])
    typed = run_main(capsys, "--db", db_url, "retry", "--due", "--dry-run", "--type", "b.job")
    assert typed.code == 0 and "1 event(s) due now" in typed.out and "dry run" in typed.out
    assert dump(db_url) == before


def test_retry_runs_what_is_due_and_reports_each_outcome(
    capsys: Capsys, db_url: str, filled: Filled
) -> None:
    done = run_main(capsys, "--db", db_url, "retry", "--due", "--handler", "handlers_fixture:fail", "--json")
    assert done.code == 0, done.err
    *attempts, summary = json_lines(done)
    assert {a["event_id"] for a in attempts} == {filled["a1"], filled["a2"], filled["b1"]}
    for line in attempts:
        assert line["kind"] == "attempt" and line["outcome"] == "failed" and line["state"] == "FAILED"
        assert line["attempt"] == 1 and line["error_type"] == "TimeoutError" and line["next_retry_at"]
        assert line["error"] == f"upstream timed out for event {line['event_id']} [after 30s]"
    assert summary["kind"] == "summary" and (summary["attempts"], summary["failed"]) == (3, 3)
    assert state_of(db_url, filled["failed"]) is State.FAILED  # not due: untouched
    again = run_main(capsys, "--db", db_url, "retry", "--due", "--handler", OK)
    assert again.code == 0 and "0 attempt(s)" in again.out


def test_retry_limit_and_type(capsys: Capsys, db_url: str, filled: Filled) -> None:
    done = run_main(capsys, "--db", db_url, "retry", "--due", "--handler", OK,
                    "--type", "a.job", "--limit", "1")
    assert done.code == 0, done.err
    assert "attempt 1 succeeded -> SUCCEEDED" in done.out and "1 attempt(s)" in done.out
    states = [state_of(db_url, filled[name]) for name in ("a1", "a2", "b1")]
    assert states.count(State.SUCCEEDED) == 1 and states[2] is State.PENDING


@pytest.mark.parametrize(("command", "spec", "message"), [
    ("retry", "no_such_module_xyz:deliver", "no module named 'no_such_module_xyz'"),
    ("retry", "handlers_fixture:missing", "'handlers_fixture' has no attribute 'missing'"),
    ("retry", "handlers_fixture:NOT_CALLABLE", "not a callable"),
    ("worker", "handlers_fixture", "must be written module:function"),
    ("run", "no_such_module_xyz:deliver", "no module named 'no_such_module_xyz'"),
])
def test_a_bad_handler_is_a_clear_error_and_nothing_is_written(
    capsys: Capsys, db_url: str, filled: Filled, *, command: str, spec: str, message: str
) -> None:
    before = dump(db_url)
    args = {"retry": ["retry", "--due"], "worker": ["worker", "--once"], "run": ["run", str(filled["a1"])]}
    done = run_main(capsys, "--db", db_url, *args[command], "--handler", spec)
    if ":" in spec:  # a handler that cannot be loaded: an error (exit 1)
        assert done.code == 1 and done.err.startswith("error (ValidationError): ")
    else:  # a value of the wrong form: a usage error (exit 2)
        assert done.code == 2 and "Invalid value for '--handler'" in done.err
    assert message in done.err
    assert "Traceback" not in done.err and done.out == ""
    assert dump(db_url) == before


def test_run_makes_one_attempt_now(capsys: Capsys, db_url: str, filled: Filled) -> None:
    done = run_main(capsys, "--db", db_url, "run", str(filled["a1"]), "--handler", OK, "--json")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["state"] == "SUCCEEDED" and result["attempt"]["number"] == 1
    too_early = run_main(capsys, "--db", db_url, "run", str(filled["failed"]), "--handler", OK)
    assert too_early.code == 1 and "RetryTooEarly" in too_early.err and "force" in too_early.err
    forced = run_main(capsys, "--db", db_url, "run", str(filled["failed"]), "--handler", OK, "--force")
    assert forced.code == 0 and "attempt 2 succeeded -> SUCCEEDED" in forced.out
    with Ledger(db_url, config=Config(), readonly=True) as ledger:
        assert ledger.show(filled["failed"]).attempts[-1].forced


def test_worker_once_prints_a_line_per_attempt_and_a_summary(
    capsys: Capsys, db_url: str, filled: Filled
) -> None:
    done = run_main(capsys, "--db", db_url, "worker", "--once", "--handler", OK,
                    "--concurrency", "2")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert "concurrency 2" in lines[0]
    assert sum("succeeded -> SUCCEEDED" in line for line in lines) == 3
    assert "3 attempt(s)" in lines[-1] and "3 succeeded" in lines[-1]
    quiet = run_main(capsys, "--db", db_url, "worker", "--once", "--quiet", "--json",
                     "--handler", OK)
    assert quiet.code == 0 and [line["kind"] for line in json_lines(quiet)] == ["summary"]


def test_recover_closes_expired_claims(capsys: Capsys, db_url: str,
                                       filled: Filled) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.claim(filled["a1"], worker="gone-worker", lease_seconds=0.001)
    time.sleep(0.01)
    before = dump(db_url)
    listed = run_main(capsys, "--db", db_url, "recover", "--dry-run", "--json")
    assert listed.code == 0 and [e["id"] for e in json.loads(listed.out)] == [filled["a1"]]
    assert json.loads(listed.out)[0]["claimed_by"] == "gone-worker"
    assert dump(db_url) == before
    done = run_main(capsys, "--db", db_url, "recover", "--json")
    assert done.code == 0, done.err
    [result] = json.loads(done.out)
    assert result["event_id"] == filled["a1"] and result["attempt"]["outcome"] == "abandoned"
    assert result["state"] == "FAILED" and "gone-worker" in result["attempt"]["error"]
    nothing = run_main(capsys, "--db", db_url, "recover")
    assert nothing.code == 0 and "recovered 0 expired claim(s)" in nothing.out
