"""Tamper evidence (SPEC section 14): history changed past the triggers is found by ``verify``.

Someone who gets past the triggers (PostgreSQL ``session_replication_role = replica``; on SQLite, the
triggers dropped and put back) edits an old attempt's error, deletes or forges a note, or removes a whole
event: ``verify`` names the event (or the digest changes). A trigger replaced by a decoy of the same name
is caught by trying a change, not by its name. An untouched database verifies clean.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cli_support import invoke
from conftest import FakeClock

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.storage import triggers
from failure_aware.storage.engine import parse_url


@pytest.fixture
def history(db_url: str, clock: FakeClock) -> Iterator[tuple[Ledger, list[int]]]:
    """A ledger with some history: attempts (failed, then succeeded), event notes and a cluster note."""
    with Ledger(db_url, config=Config(), clock=clock) as ledger:
        ids = [ledger.detect("pay.webhook", {"n": n}, key=f"k{n}").id for n in range(4)]
        for event_id in ids:
            ledger.report(
                event_id, False, error_type="TimeoutError", error=f"timed out after 30s [{event_id}]"
            )
            clock.advance(1)
        clock.advance(60)
        ledger.report(ids[0], True)
        ledger.annotate(ids[1], "provider incident", author="ops")
        ledger.correlate()
        [cluster] = ledger.clusters()
        ledger.annotate_cluster(cluster.id, "known outage", author="ops")
        yield ledger, ids


def past_the_triggers(url: str, *statements: str) -> None:
    """Run ``statements`` as someone who got past the append-only triggers (and left them in place)."""
    engine = sa.create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            else:
                for table in ("event_detected", "attempt", "transition", "annotation"):
                    for name in triggers.trigger_names(table):
                        conn.execute(sa.text(f"DROP TRIGGER {name}"))
            for statement in statements:
                conn.execute(sa.text(statement))
            if conn.dialect.name == "sqlite":
                triggers.install(conn)
    finally:
        engine.dispose()


def problems_of(ledger: Ledger) -> list[str]:
    report = ledger.verify()
    assert report.ok is not bool(report.problems)
    return list(report.problems)


def test_an_untouched_database_verifies_clean_with_a_stable_digest(history: tuple[Ledger, list[int]]) -> None:
    ledger, _ = history
    first, second = ledger.verify(), ledger.verify()
    assert first.ok and first.problems == ()
    assert first.digest == second.digest and first.digest is not None and len(first.digest) == 64
    assert first.digest_rows == 20  # 4 x (event, detected, attempt, transition), a success, 2 notes


def test_an_edited_old_attempt_is_found_naming_its_event(
    history: tuple[Ledger, list[int]], db_url: str
) -> None:
    ledger, ids = history
    past_the_triggers(
        db_url, f"UPDATE attempt SET error = 'all fine' WHERE event_id = {ids[0]} AND number = 1"
    )
    [problem] = problems_of(ledger)
    assert problem.startswith(f"event {ids[0]}: history was altered") and "does not match its hash" in problem


def test_a_deleted_note_and_a_forged_note_are_found(history: tuple[Ledger, list[int]], db_url: str) -> None:
    ledger, ids = history
    past_the_triggers(db_url, f"DELETE FROM annotation WHERE event_id = {ids[1]}")
    assert [p.split(":")[0] for p in problems_of(ledger)] == [f"event {ids[1]}"]
    # A note forged with a plain INSERT (the triggers do not refuse inserts), even at the next position:
    past_the_triggers(
        db_url,
        f"INSERT INTO annotation (event_id, author, at_us, text, chain_seq, chain_hash) "
        f"VALUES ({ids[2]}, 'ops', 0, 'nothing happened', 3, 'forged')",
    )
    assert {p.split(":")[0] for p in problems_of(ledger)} == {f"event {ids[1]}", f"event {ids[2]}"}


def test_a_deleted_cluster_note_is_found(history: tuple[Ledger, list[int]], db_url: str) -> None:
    ledger, _ = history
    past_the_triggers(db_url, "DELETE FROM annotation WHERE event_id IS NULL")
    [problem] = problems_of(ledger)
    assert problem.startswith("cluster notes of pay.webhook: history was altered")


def test_a_decoy_trigger_with_the_right_name_is_caught(
    history: tuple[Ledger, list[int]], db_url: str
) -> None:
    ledger, _ = history
    engine = sa.create_engine(parse_url(db_url))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "CREATE FUNCTION decoy() RETURNS trigger AS $$ BEGIN RETURN NEW; END; $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(sa.text("DROP TRIGGER attempt_no_update ON attempt"))
            conn.execute(
                sa.text(
                    "CREATE TRIGGER attempt_no_update BEFORE UPDATE ON attempt "
                    "FOR EACH ROW EXECUTE FUNCTION decoy()"
                )
            )
        else:
            conn.execute(sa.text("DROP TRIGGER attempt_no_update"))
            conn.execute(
                sa.text("CREATE TRIGGER attempt_no_update AFTER UPDATE ON attempt BEGIN SELECT 1; END")
            )
    engine.dispose()
    [problem] = problems_of(ledger)
    assert "history table attempt accepts UPDATE" in problem
    assert ledger.verify().digest == ledger.verify().digest  # the probe wrote nothing


def test_a_whole_event_removed_changes_the_digest(history: tuple[Ledger, list[int]], db_url: str) -> None:
    ledger, ids = history
    before = ledger.verify().digest
    gone = ids[3]  # its rows, its projection and its count: a removal verify alone cannot see
    past_the_triggers(
        db_url,
        *(
            f"DELETE FROM {t} WHERE event_id = {gone}"
            for t in ("attempt", "transition", "annotation", "event_state")
        ),
        f"DELETE FROM event_detected WHERE id = {gone}",
        "UPDATE state_count SET n = n - 1 WHERE state = 'FAILED' AND n > 0 AND shard = "
        "(SELECT min(shard) FROM state_count WHERE state = 'FAILED' AND n > 0)",
    )
    after = ledger.verify()
    assert after.digest != before


def test_cli_verify_exits_1_naming_the_event_and_prints_the_digest(
    history: tuple[Ledger, list[int]], db_url: str
) -> None:
    ledger, ids = history
    clean = invoke(db_url, "verify", "--digest")
    assert clean.exit_code == 0 and f"digest {ledger.verify().digest}" in clean.output
    past_the_triggers(db_url, f"UPDATE transition SET reason = 'x' WHERE event_id = {ids[2]}")
    tampered = invoke(db_url, "verify")
    assert tampered.exit_code == 1 and f"event {ids[2]}: history was altered" in tampered.output
