"""Retention (SPEC 15): an explicit, recorded archive is the one way history leaves, on both backends.

Archiving the older half leaves exactly the newer half (and the unfinished old events); the file brings
the archived events back exactly; ``verify`` is clean before and after with the same digest; DELETE is
refused outside the archive's own transaction (before, after, and during one from another connection);
the dry run writes nothing; bad input is refused before anything is written.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_support import invoke, run_main
from conftest import FakeClock

from failure_aware import Ledger, ValidationError
from failure_aware.config import Config
from failure_aware.retention import removal, run
from failure_aware.storage.engine import parse_url
from failure_aware.storage.tables import HISTORY_TABLES, archive, archive_guard

TYPES = ("pay.webhook", "mail.send")


def build_half(ledger: Ledger, clock: FakeClock, tag: str) -> dict[str, str]:
    """Events of two types in every state, with failures, notes and a cluster note; their keys -> state."""
    keys: dict[str, str] = {}
    for event_type in TYPES:
        ids = {}
        for name in ("ok", "dead", "buried", "failed", "pending", "flight"):
            key = f"{tag}-{name}"
            ids[name] = ledger.detect(event_type, {"n": name, "tag": tag}, key=key).id
        for name in ("ok", "dead", "buried", "failed"):
            ledger.report(ids[name], False, error_type="TimeoutError", error=f"timed out [{tag}/{name}]",
                          permanent=name == "dead")
            clock.advance(1)
        clock.advance(3600)
        ledger.report(ids["ok"], True)
        ledger.bury(ids["buried"], actor="ops")
        ledger.annotate(ids["ok"], f"checked {tag}", author="ops")
        ledger.claim(ids["flight"], worker="w1")
        for name, state in (("ok", "SUCCEEDED"), ("dead", "DEAD"), ("buried", "DEAD"), ("failed", "FAILED"),
                            ("pending", "PENDING"), ("flight", "IN_FLIGHT")):
            keys[f"{event_type}/{tag}-{name}"] = state
    ledger.correlate()
    for cluster in ledger.clusters():
        if cluster.window_end >= clock.now - timedelta(hours=2):
            ledger.annotate_cluster(cluster.id, f"outage {tag}", author="ops")
    clock.advance(60)
    return keys


@pytest.fixture
def two_halves(ledger: Ledger, clock: FakeClock) -> tuple[Ledger, dict[str, str], dict[str, str], datetime]:
    """A ledger whose history is an older and a newer half a day apart, and the time between them."""
    old = build_half(ledger, clock, "old")
    clock.advance(86400)
    horizon = clock.now
    clock.advance(60)
    new = build_half(ledger, clock, "new")
    clock.advance(60)
    return ledger, old, new, horizon


def by_key(records: Iterator[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {f"{r['event_type']}/{r['key']}": r for r in records if "kind" not in r}


def read_file(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


FINISHED = {"SUCCEEDED", "DEAD"}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_archiving_the_older_half_leaves_the_newer_and_the_file_restores_it_exactly(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path, suffix: str
) -> None:
    ledger, old, new, horizon = two_halves
    before = ledger.verify()
    assert before.ok, before.problems
    exported = by_key(ledger.export_events())
    counts = ledger.state_counts()
    leaving = {k for k, state in old.items() if state in FINISHED}
    target = tmp_path / f"archive{suffix}"

    report = ledger.archive(horizon, to=target)

    assert report.events == report.removed_events == len(leaving) and report.kept_changed == 0
    remaining = by_key(ledger.export_events())
    assert set(remaining) == set(new) | (set(old) - leaving)  # exactly the newer half, and unfinished old
    for key, record in remaining.items():
        assert record == exported[key]  # nothing that stays was altered
    after = ledger.verify()
    assert after.ok, after.problems
    assert (after.digest, after.digest_rows) == (before.digest, before.digest_rows)  # comparable across it
    assert sum(ledger.state_counts().values()) == sum(counts.values()) - len(leaving)
    assert ledger.attempt_totals() == before_totals(exported)  # a counter of every attempt ever: unchanged

    lines = read_file(target)
    manifest = lines[-1]
    assert manifest["kind"] == "archive_manifest" and manifest["events"] == len(leaving)
    assert manifest["horizon"] == report.as_dict()["horizon"]
    archived = by_key(iter(lines))
    assert set(archived) == leaving
    assert all(archived[k] == exported[k] for k in leaving)
    assert any(line.get("kind") == "cluster_note" for line in lines)
    with ledger.store.read() as conn:
        records = conn.execute(sa.select(archive)).all()
    assert sum(r.events for r in records) == len(leaving)
    assert {r.file_sha256 for r in records} == {report.file_sha256}

    # Restored into an empty database: the archived events, attempts, transitions and notes, exactly.
    with Ledger(f"sqlite:///{tmp_path / 'restored.db'}", config=Config()) as empty:
        restored = empty.import_file(target)
        assert restored.imported == len(leaving)
        assert by_key(empty.export_events()) == {k: exported[k] for k in leaving}
        assert [n for n in empty.export_events() if n.get("kind") == "cluster_note"]
        assert empty.verify().ok
    # ... and into the same database again.
    ledger.import_file(target)
    assert by_key(ledger.export_events()) == exported
    assert ledger.verify().ok, ledger.verify().problems


def before_totals(exported: dict[str, dict[str, object]]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for key, record in exported.items():
        for attempt in record["attempts"]:  # type: ignore[attr-defined]
            pair = (key.split("/")[0], attempt["outcome"])
            totals[pair] = totals.get(pair, 0) + 1
    return totals


def test_unfinished_events_never_leave_whatever_their_age(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], clock: FakeClock, tmp_path: Path
) -> None:
    ledger, old, new, _ = two_halves
    clock.advance(365 * 86400)
    report = ledger.archive(clock.now, to=tmp_path / "all.jsonl")
    assert report.removed_events == sum(1 for s in {**old, **new}.values() if s in FINISHED)
    states = {f"{r['event_type']}/{r['key']}": r["state"] for r in ledger.export_events() if "kind" not in r}
    assert states == {k: s for k, s in {**old, **new}.items() if s not in FINISHED}
    assert set(states.values()) == {"PENDING", "IN_FLIGHT", "FAILED"}
    assert ledger.verify().ok


def test_pages_are_id_windows_that_pass_over_runs_of_events_that_stay(
    ledger: Ledger, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows of 4 ids: runs of unfinished events fill whole windows (pages with nothing to take), and
    # the ids an earlier archive removed leave gaps that the next window jumps over.
    monkeypatch.setattr(run, "PAGE_EVENTS", 4)
    ids, finished = {}, set()
    for n in range(40):
        ids[n] = ledger.detect("sync.job", {"n": n}, key=f"k{n}").id
        if n % 13 == 12 or 20 <= n <= 28:  # the others stay PENDING
            ledger.report(ids[n], True)
            finished.add(n)
    clock.advance(60)
    first = ledger.archive(clock.now, to=tmp_path / "a.jsonl")
    assert first.removed_events == len(finished)
    for n in range(40, 50):
        ledger.report(ledger.detect("sync.job", {"n": n}, key=f"k{n}").id, True)
    ledger.report(ids[0], True)
    clock.advance(60)
    second = ledger.archive(clock.now, to=tmp_path / "b.jsonl")
    assert second.removed_events == 11
    left = {r["key"] for r in ledger.export_events() if "kind" not in r}
    assert left == {f"k{n}" for n in range(1, 40) if n not in finished}
    assert ledger.verify().ok


def test_type_filter_takes_only_that_type(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path
) -> None:
    ledger, old, _, horizon = two_halves
    report = ledger.archive(horizon, to=tmp_path / "pay.jsonl", event_type="pay.webhook")
    assert set(report.by_type_state) == {"pay.webhook"}
    assert report.removed_events == sum(1 for k, s in old.items() if s in FINISHED and k.startswith("pay."))
    assert ledger.verify().ok


def test_a_dry_run_reports_by_type_and_state_and_writes_nothing(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path, db_url: str
) -> None:
    ledger, old, _, horizon = two_halves
    digest = ledger.verify().digest
    target = tmp_path / "never.jsonl"
    report = ledger.archive(horizon, to=target, dry_run=True)
    assert report.dry_run and not target.exists() and report.removed_events == 0
    expected: dict[str, dict[str, int]] = {}
    for key, state in old.items():
        if state in FINISHED:
            kind = expected.setdefault(key.split("/")[0], {})
            kind[state] = kind.get(state, 0) + 1
    assert report.by_type_state == expected and report.size_bytes > 0
    assert ledger.verify().digest == digest
    with ledger.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(archive)).scalar_one() == 0
    shown = invoke(db_url, "archive", "--before", horizon.isoformat(), "--dry-run", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["by_type_state"] == expected
    assert ledger.verify().digest == digest


def test_correlate_keeps_the_horizon_and_never_recomputes_behind_it(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path
) -> None:
    ledger, _, _, horizon = two_halves
    ledger.archive(horizon, to=tmp_path / "a.jsonl")
    assert all(c.window_end >= horizon for c in ledger.clusters())
    assert ledger.correlate().mode == "incremental"
    incremental = sorted(c.id for c in ledger.clusters())
    ledger.correlate(rebuild=True)
    assert sorted(c.id for c in ledger.clusters()) == incremental
    assert incremental  # the newer half's clusters are still there
    assert ledger.verify().ok


def plain_engine(url: str) -> sa.Engine:
    """A connection of someone else (no guard), that never waits long for SQLite's write lock."""
    if url.startswith("sqlite"):
        return sa.create_engine(parse_url(url), connect_args={"timeout": 0.2})
    return sa.create_engine(parse_url(url))


def refused(engine: sa.Engine, statement: str) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    except sa.exc.DBAPIError:
        return True
    return False


def test_a_raw_delete_is_refused_before_after_and_during_an_archive(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path, db_url: str
) -> None:
    ledger, _, _, horizon = two_halves
    other = plain_engine(db_url)
    try:
        for table in HISTORY_TABLES:
            assert refused(other, f"DELETE FROM {table.name}"), f"before: {table.name}"
        ledger.archive(horizon, to=tmp_path / "a.jsonl")
        for table in (*HISTORY_TABLES, archive):
            assert refused(other, f"DELETE FROM {table.name}"), f"after: {table.name}"
        # During one: the guard is open in the archive's own transaction.
        with ledger.store.write() as conn:
            removal.open_guard(conn, "test-archive")
            for table in HISTORY_TABLES:
                assert refused(other, f"DELETE FROM {table.name}"), f"during, other connection: {table.name}"
            nested = conn.begin_nested()
            assert conn.execute(sa.text("DELETE FROM annotation")).rowcount > 0  # the guard lets it through
            nested.rollback()
            for statement in ("UPDATE attempt SET error = 'x'", "DELETE FROM archive"):
                nested = conn.begin_nested()
                with pytest.raises(sa.exc.DBAPIError):
                    conn.execute(sa.text(statement))  # never, guard or not
                nested.rollback()
            removal.close_guard(conn, "test-archive")
            nested = conn.begin_nested()
            with pytest.raises(sa.exc.DBAPIError):
                conn.execute(sa.text("DELETE FROM annotation"))  # closed again
            nested.rollback()
        with ledger.store.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(archive_guard)).scalar_one() == 0
        report = ledger.verify()
        assert report.ok, report.problems
    finally:
        other.dispose()


def test_a_guard_row_left_committed_is_a_verify_problem(ledger: Ledger, db_url: str) -> None:
    ledger.detect("pay.webhook", {}, key="k")
    engine = plain_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(archive_guard).values(archive_id="left"))
    finally:
        engine.dispose()
    assert any("archive_guard" in p for p in ledger.verify().problems)


def test_bad_input_is_refused_and_nothing_is_written(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], clock: FakeClock, tmp_path: Path,
    db_url: str,
) -> None:
    ledger, _, _, horizon = two_halves
    digest = ledger.verify().digest
    existing = tmp_path / "old.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(ValidationError, match="exists"):
        ledger.archive(horizon, to=existing)
    assert existing.read_text() == "keep me\n"
    with pytest.raises(ValidationError, match="future"):
        ledger.archive(clock.now + timedelta(minutes=1), to=tmp_path / "x.jsonl")
    with pytest.raises(ValidationError, match="chunk_events"):
        ledger.archive(horizon, to=tmp_path / "x.jsonl", chunk_events=0)
    for busy in (0, -0.5, 1.5, True, "half"):
        with pytest.raises(ValidationError, match="max_busy"):
            ledger.archive(horizon, to=tmp_path / "x.jsonl", max_busy=busy)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="needs a file"):
        ledger.archive(horizon)
    with pytest.raises(ValidationError, match="does not exist"):
        ledger.archive(horizon, to=tmp_path / "no" / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    no_file = invoke(db_url, "archive", "--before", "2026-01-01T00:00:00Z")
    assert no_file.exit_code == 2 and "--to" in no_file.output
    garbage = invoke(db_url, "archive", "--before", "yesterday", "--to", str(tmp_path / "y.jsonl"))
    assert garbage.exit_code == 2 and not (tmp_path / "y.jsonl").exists()
    assert ledger.verify().digest == digest
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"event_type": "a.b"}\n' * 100)[:40])
    with pytest.raises(ValidationError, match="gzip"):
        ledger.import_file(broken)
    assert ledger.verify().digest == digest


def test_an_archive_changed_after_it_was_written_is_refused_whole(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path, db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, _, _, horizon = two_halves
    target = tmp_path / "archive.jsonl.gz"
    ledger.archive(horizon, to=target)
    digest = ledger.verify().digest
    lines = gzip.decompress(target.read_bytes()).splitlines(keepends=True)
    changed = tmp_path / "changed.jsonl.gz"  # one archived failure's message rewritten, all else kept
    edited = [line.replace(b"timed out [old/dead]", b"timed out [old/DEAD]") for line in lines]
    assert edited != lines
    changed.write_bytes(gzip.compress(b"".join(edited)))
    with pytest.raises(ValidationError, match="content_sha256") as refused:
        ledger.import_file(changed)
    assert "nothing was written" in str(refused.value)
    assert ledger.verify().digest == digest  # nothing written
    result = run_main(capsys, "--db", db_url, "import", str(changed))
    assert result.code != 0 and "content_sha256" in result.err and "Traceback" not in result.err
    assert ledger.verify().digest == digest
    restored = ledger.import_file(target)  # the file as written restores
    assert restored.imported > 0


def test_cli_archive_writes_the_file_and_reports_it(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path, db_url: str
) -> None:
    _, old, _, horizon = two_halves
    target = tmp_path / "cli.jsonl.gz"
    result = invoke(db_url, "archive", "--before", horizon.isoformat(), "--to", str(target),
                    "--chunk", "2")
    assert result.exit_code == 0, result.output
    leaving = sum(1 for s in old.values() if s in FINISHED)
    assert f"{leaving} event(s)" in result.stdout and "sha256" in result.stdout
    assert read_file(target)[-1]["events"] == leaving
    verify = invoke(db_url, "verify")
    assert verify.exit_code == 0, verify.output


def test_progress_is_told_of_both_phases(
    two_halves: tuple[Ledger, dict[str, str], dict[str, str], datetime], tmp_path: Path
) -> None:
    ledger, old, _, horizon = two_halves
    told: list[tuple[str, int, int | None]] = []
    ledger.archive(horizon, to=tmp_path / "p.jsonl", chunk_events=3,
                   on_progress=lambda phase, done, total: told.append((phase, done, total)))
    leaving = sum(1 for s in old.values() if s in FINISHED)
    assert [t for t in told if t[0] == "write"][-1] == ("write", leaving, leaving)
    removes = [t for t in told if t[0] == "remove"]
    assert removes[-1] == ("remove", leaving, leaving) and len(removes) == -(-leaving // 3)
