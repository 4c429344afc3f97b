"""SPEC 3 "Text and times" on every path (Python, CLI, import) and both backends: times within
[1970, now + max_clock_skew], integers within 2**63 - 1, caller-named text without NUL or lone surrogates,
failure text recorded, payloads nested at most 100 deep. Each refusal is a clear error (exit 1 or 2, never
70) that writes nothing; what gets in exports and imports again.

The hostile inputs come from ``../shared/datasets/hostile/strings.json`` (next to the repository), read at
test time; the tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cli_support import REPO_ROOT, dump, run_main
from conftest import FakeClock, drop_database, make_database

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.domain import validation
from failure_aware.domain.errors import ValidationError

HOSTILE = REPO_ROOT.parent / "shared" / "datasets" / "hostile" / "strings.json"
BIG = 2**63
NOW = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)  # conftest's FakeClock start


def hostile() -> dict[str, Any]:
    if not HOSTILE.is_file():
        pytest.skip(f"hostile inputs not found at {HOSTILE} (the shared datasets sit next to the repository)")
    return json.loads(HOSTILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def refused(ledger: Ledger, call: Callable[[], Any], match: str = "") -> str:
    before = dump(ledger.store.url_text)
    with pytest.raises(ValidationError) as info:
        call()
    assert match in str(info.value)
    assert dump(ledger.store.url_text) == before, "a refused call wrote something"
    return str(info.value)


def deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    root = node
    for _ in range(levels - 1):
        node["d"] = {}
        node = node["d"]
    return root


# -- times ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("moment", "bound"), [
    (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "before 1970-01-01T00:00:00Z"),
    (datetime(1, 1, 1, tzinfo=UTC), "before 1970"),
    (datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=14))), "out of range"),  # the year 0 in UTC
    (NOW + timedelta(minutes=5, microseconds=1), "now plus max_clock_skew"),
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "now plus max_clock_skew"),
])
def test_no_time_outside_the_bounds_gets_in_through_python(
    ledger: Ledger, moment: datetime, bound: str
) -> None:
    event = ledger.detect("pay.hook")
    refused(ledger, lambda: ledger.detect("pay.hook", at=moment), bound)
    refused(ledger, lambda: ledger.report(event.id, False, at=moment), bound)
    refused(ledger, lambda: ledger.events(since=moment), bound)
    refused(ledger, lambda: ledger.revive_dead(since=moment), bound)
    claim = ledger.claim(event.id)
    refused(ledger, lambda: ledger.finish(claim, True, at=moment), bound)


def test_the_bounds_themselves_are_accepted(ledger: Ledger) -> None:
    assert ledger.detect("pay.hook", at=datetime(1970, 1, 1, tzinfo=UTC)).detected_at.year == 1970
    ahead = ledger.detect("pay.hook", at=NOW + timedelta(minutes=5))
    assert ahead.detected_at == NOW + timedelta(minutes=5)


def test_max_clock_skew_is_configurable(db_url: str, clock: FakeClock) -> None:
    with Ledger(db_url, config=Config(max_clock_skew_seconds=0), clock=clock) as ledger:
        refused(ledger, lambda: ledger.detect("pay.hook", at=NOW + timedelta(seconds=1)), "max_clock_skew")
    with pytest.raises(ValidationError, match="max_clock_skew"):
        Config(max_clock_skew_seconds=-1)


def test_hostile_times_through_python_cli_and_import(
    ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    times = hostile()["times"]
    for text in times["refused"]:
        line = json.dumps({"event_type": "pay.hook", "detected_at": text})
        refused(ledger, lambda line=line: ledger.import_file(io.StringIO(line + "\n")))
        before = dump(db_url)
        outcome = run_main(capsys, "--db", db_url, "detect", "pay.hook", "--at", text)
        assert outcome.code in (1, 2) and "error" in outcome.err.lower() and "Traceback" not in outcome.err
        assert dump(db_url) == before
    for text in times["accepted_if_not_in_the_future"]:
        line = json.dumps({"event_type": "pay.hook", "key": text, "detected_at": text})
        assert ledger.import_file(io.StringIO(line + "\n")).imported == 1


# -- integers -------------------------------------------------------------------------------------------
def test_no_integer_past_2_63_gets_in_through_python(ledger: Ledger) -> None:
    for call in (lambda: ledger.get(BIG), lambda: ledger.show(BIG), lambda: ledger.report(BIG, True),
                 lambda: ledger.annotate(BIG, "n", author="a"), lambda: ledger.events(limit=BIG),
                 lambda: ledger.events(before_id=BIG), lambda: ledger.claim_due(limit=BIG),
                 lambda: ledger.due(limit=BIG)):
        refused(ledger, call, "9223372036854775807")
    record = {"event_type": "pay.hook", "transitions": [
        {"at": "2026-01-02T03:00:00Z", "to_state": "PENDING"},
        {"at": "2026-01-02T03:00:01Z", "from_state": "PENDING", "to_state": "SUCCEEDED",
         "attempt_number": BIG}]}
    refused(ledger, lambda: ledger.import_events([record]), "9223372036854775807")


@pytest.mark.parametrize(("args", "codes"), [
    (("show", str(BIG)), (1,)),
    (("show", "99999999999999999999"), (1,)),
    (("report", str(BIG), "--ok"), (1,)),
    (("events", "--limit", str(BIG)), (2,)),
    (("events", "--before-id", str(BIG)), (2,)),
    (("events", "--since", "99999999999d"), (2,)),
    (("events", "--since", "0001-01-01T05:00:00+14:00"), (1, 2)),
    (("revive", "--since", "99999999999999999999s"), (2,)),
    (("retry", "--due", "--dry-run", "--limit", str(BIG)), (2,)),
])
def test_no_integer_or_time_out_of_range_reaches_the_database_from_the_cli(
    db_url: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], codes: tuple[int, ...]
) -> None:
    Ledger(db_url, config=Config()).close()
    before = dump(db_url)
    outcome = run_main(capsys, "--db", db_url, *args)
    assert outcome.code in codes, outcome.err
    assert "internal error" not in outcome.err and "Traceback" not in outcome.err and outcome.err.strip()
    assert dump(db_url) == before


# -- text -----------------------------------------------------------------------------------------------
def test_caller_named_text_is_refused_on_every_path(
    ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    event = ledger.detect("pay.hook")
    for text in hostile()["text_refused_when_named_by_a_caller"]:
        refused(ledger, lambda text=text: ledger.detect("pay.hook", key=text), "key")
        refused(ledger, lambda text=text: ledger.annotate(event.id, text, author="ops"), "text")
        refused(ledger, lambda text=text: ledger.annotate(event.id, "note", author=text), "author")
        if validation.UNSTORABLE.search(text):  # in a payload only NUL and lone surrogates are refused
            refused(ledger, lambda text=text: ledger.detect("pay.hook", {"k": text}), "payload string")
            refused(ledger, lambda text=text: ledger.detect("pay.hook", {"a": [{text: 1}]}), "payload key")
        line = json.dumps({"event_type": "pay.hook", "key": text})
        refused(ledger, lambda line=line: ledger.import_file(io.StringIO(line + "\n")))
        if "\x00" in text or not text:
            continue  # a NUL or an empty string cannot be passed as a process argument
        before = dump(db_url)
        outcome = run_main(capsys, "--db", db_url, "detect", "pay.hook", "--key", text)
        assert outcome.code == 1 and "key" in outcome.err
        assert dump(db_url) == before


def test_failure_text_is_recorded_on_every_path(
    ledger: Ledger, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n, text in enumerate(hostile()["text_recorded_when_produced_by_a_failure"]):
        expected = text.replace("\x00", "\ufffd").replace("\udce9", "\ufffd")
        by_python = ledger.detect("pay.hook", key=f"py{n}")
        assert ledger.report(by_python.id, False, error_type="E", error=text).attempt.error == expected
        line = json.dumps({"event_type": "pay.hook", "key": f"imp{n}", "detected_at": "2026-01-02T03:00:00Z",
                           "attempts": [{"at": "2026-01-02T03:00:01Z", "outcome": "failed", "error": text}]})
        ledger.import_file(io.StringIO(line + "\n"))
        imported = next(e for e in ledger.events(limit=500) if e.key == f"imp{n}")
        assert imported.last_error == expected
        if "\x00" in text or "\udce9" in text:
            continue  # not a valid process argument
        by_cli = ledger.detect("pay.hook", key=f"cli{n}")
        outcome = run_main(capsys, "--db", db_url, "report", str(by_cli.id), "--failed", "--error", text)
        assert outcome.code == 0, outcome.err
        assert ledger.get(by_cli.id).last_error == expected
    assert ledger.verify().ok


def test_a_payload_nested_10000_deep_is_a_clear_refusal(
    ledger: Ledger, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    levels = hostile()["json_generators"]["deeply_nested_payload_depth"] if HOSTILE.is_file() else 10_000
    refused(ledger, lambda: ledger.detect("pay.hook", deep(levels)), "nested more than 100 levels")
    ledger.detect("pay.hook", deep(validation.MAX_JSON_DEPTH))  # the limit itself is fine
    text = '{"d":' * levels + "{}" + "}" * levels
    file = tmp_path / "deep.json"
    file.write_text(text, encoding="utf-8")
    before = dump(db_url)
    outcome = run_main(capsys, "--db", db_url, "detect", "pay.hook", "--payload", f"@{file}")
    assert outcome.code == 2 and "nested" in outcome.err
    line = '{"event_type": "pay.hook", "payload": ' + text + "}\n"
    (tmp_path / "deep.jsonl").write_text(line, encoding="utf-8")
    outcome = run_main(capsys, "--db", db_url, "import", str(tmp_path / "deep.jsonl"))
    assert outcome.code == 1 and "nested" in outcome.err
    middle = '{"event_type": "pay.hook", "payload": ' + '{"d":' * 150 + "{}" + "}" * 150 + "}\n"
    (tmp_path / "middle.jsonl").write_text(middle, encoding="utf-8")
    outcome = run_main(capsys, "--db", db_url, "import", str(tmp_path / "middle.jsonl"))
    assert outcome.code == 1 and "nested more than 100 levels" in outcome.err
    assert dump(db_url) == before


# -- a foreign SQLite file ---------------------------------------------------------------------------------
def test_a_foreign_sqlite_file_is_left_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "in.jsonl").write_text('{"event_type": "pay.hook"}\n', encoding="utf-8")
    url = f"sqlite:///{path}"
    for args in (("detect", "pay.hook"), ("import", str(tmp_path / "in.jsonl")),
                 ("worker", "--once", "--handler", "handlers_fixture:ok"), ("report", "1", "--ok"),
                 ("db", "upgrade"), ("events",)):
        outcome = run_main(capsys, "--db", url, *args)
        assert outcome.code == 1 and "not a failure-aware database" in outcome.err, (args, outcome.err)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{args[0]} changed the file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "in.jsonl"]  # no -wal, -shm, -journal


# -- round trip ------------------------------------------------------------------------------------------
def test_what_any_path_writes_exports_and_imports_again(
    ledger: Ledger, clock: FakeClock, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    early = ledger.detect("pay.hook", key="epoch", at=datetime(1970, 1, 1, tzinfo=UTC))
    ledger.report(early.id, False, error_type="E\x00", error="caf\udce9", at=datetime(1970, 1, 1, 0, 0, 1,
                                                                                         tzinfo=UTC))
    ahead = ledger.detect("pay.hook", key="ahead", at=clock.now + timedelta(minutes=5))
    ledger.report(ahead.id, False, error="x" * 100_000, at=clock.now + timedelta(minutes=5), permanent=True,
                  detail={"status": 410, "body": "\x1b[31m"})
    ledger.annotate(ahead.id, "\u202eevil.txt", author="ops")
    exported = list(ledger.export_events())
    clock.advance(600)  # the import happens later: every time is in the past by then
    target_url, token = make_database(backend, tmp_path_factory)
    try:
        with Ledger(target_url, config=Config(), clock=clock) as target:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in exported)
            report = target.import_file(io.BytesIO(text.encode("utf-8")))
            assert report.imported == 2
            assert list(target.export_events()) == exported
            assert target.verify().ok
            assert target.get(2).state is State.DEAD
    finally:
        drop_database(token)
