"""API tokens below the server (both backends): hashed storage, scopes, revocation; the token CLI; and
schema v8 (tokens, attempt counters; numbered v6 in the plan) on top of a v3 database equal to a fresh one."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from cli_support import run_main
from conftest import FakeClock
from server_support import all_stored_text
from test_schema import describe, migrate

from failure_aware import Ledger, NotFound, ValidationError
from failure_aware.config import Config
from failure_aware.domain.tokens import Scope
from failure_aware.events import totals


def test_tokens_are_stored_hashed_and_scoped(ledger: Ledger) -> None:
    made = ledger.create_token("ci", "record", actor="alice")
    assert made.secret.startswith("fa_") and len(made.secret) > 40
    assert made.secret not in repr(made) and made.secret not in str(made)
    stored = all_stored_text(ledger)
    assert made.secret not in stored
    assert hashlib.sha256(made.secret.encode()).hexdigest() in stored
    found = ledger.authenticate(made.secret)
    assert found is not None and (found.name, found.scope, found.created_by) == ("ci", Scope.RECORD, "alice")
    assert ledger.authenticate(made.secret + "x") is None and ledger.authenticate("") is None
    assert ledger.authenticate("fa_" + "a" * 5000) is None
    assert Scope.ADMIN.includes(Scope.OPERATE) and Scope.RECORD.includes(Scope.READ)
    assert not Scope.READ.includes(Scope.RECORD)


def test_names_are_unique_forever_and_revocation_is_kept(ledger: Ledger) -> None:
    first = ledger.create_token("ci", "read")
    with pytest.raises(ValidationError, match="exists"):
        ledger.create_token("ci", "admin")
    with pytest.raises(ValidationError, match="unknown scope"):
        ledger.create_token("other", "root")
    assert ledger.has_tokens()
    revoked = ledger.revoke_token("ci")
    assert revoked.revoked_at is not None and not revoked.active
    assert ledger.revoke_token("ci").revoked_at == revoked.revoked_at  # a second revoke changes nothing
    assert ledger.authenticate(first.secret) is None and not ledger.has_tokens()
    with pytest.raises(ValidationError, match="exists"):
        ledger.create_token("ci", "read")  # the name stays the actor of what the revoked token did
    with pytest.raises(NotFound):
        ledger.revoke_token("nobody")
    assert [t.name for t in ledger.tokens()] == ["ci"]


def test_attempt_counters_follow_every_path(ledger: Ledger, clock: FakeClock) -> None:
    event = ledger.detect("pay.hook", key="a")
    ledger.report(event.id, False, error="x")
    claim = ledger.claim(event.id, force=True, lease_seconds=10)
    ledger.finish(claim, True)
    other = ledger.detect("pay.hook", key="b")
    ledger.claim(other.id, lease_seconds=1)
    clock.advance(5)
    ledger.recover()
    ledger.import_events(
        [
            {
                "event_type": "imp",
                "key": "i",
                "detected_at": "2026-01-01T00:00:00Z",
                "attempts": [{"at": "2026-01-01T00:00:01Z", "outcome": "failed", "error": "e"}],
            }
        ]
    )
    assert ledger.attempt_totals() == {
        ("pay.hook", "failed"): 1,
        ("pay.hook", "succeeded"): 1,
        ("pay.hook", "abandoned"): 1,
        ("imp", "failed"): 1,
    }
    with ledger.store.read() as conn:
        assert totals.recount(conn) == ledger.attempt_totals()
    assert ledger.verify().ok


def test_verify_finds_a_wrong_attempt_counter(ledger: Ledger) -> None:
    event = ledger.detect("pay.hook", key="a")
    ledger.report(event.id, False, error="x")
    with ledger.store.write() as conn:
        conn.execute(sa.text("UPDATE attempt_total SET n = n + 1"))
    assert any("attempt_total" in p for p in ledger.verify().problems)


def test_the_api_tables_on_a_v3_database_equal_a_fresh_schema(
    db_url: str, backend: str, tmp_path_factory: pytest.TempPathFactory, clock: FakeClock
) -> None:
    from conftest import drop_database, make_database

    migrate(db_url, upto=3)
    engine = sa.create_engine(db_url)
    t = 1_767_326_400_000_000
    with engine.begin() as conn:  # one event with a failed attempt, written through the v3 tables
        conn.execute(
            sa.text(
                "INSERT INTO event_detected (id, event_type, key, payload, detected_at_us, "
                "recorded_at_us) VALUES (1, 'pay.hook', 'k', '{}', :t, :t)"
            ),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO attempt (event_id, event_type, number, at_us, outcome, error, "
                "fingerprint, forced, actor) VALUES (1, 'pay.hook', 1, :t, 'failed', 'x', 'f', "
                "false, 'system')"
            ),
            {"t": t + 1},
        )
    engine.dispose()
    with Ledger(db_url, upgrade=True, config=Config(), clock=clock) as upgraded:
        assert upgraded.attempt_totals() == {("pay.hook", "failed"): 1}  # backfilled from history
        assert upgraded.tokens() == []
    fresh_url, token = make_database(backend, tmp_path_factory)
    try:
        Ledger(fresh_url, config=Config(), clock=clock).close()
        assert describe(db_url) == describe(fresh_url)
    finally:
        drop_database(token)


def test_token_commands(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    made = run_main(capsys, "--db", db_url, "token", "create", "ci", "--scope", "operate", "--json")
    assert made.code == 0
    secret = made.json()["secret"]
    assert made.json()["scope"] == "operate"
    listed = run_main(capsys, "--db", db_url, "token", "list", "--json")
    assert [t["name"] for t in listed.json()] == ["ci"] and secret not in listed.out
    plain = run_main(capsys, "--db", db_url, "token", "create", "ops", "--scope", "read")
    assert plain.code == 0 and plain.out.strip().splitlines()[-1].startswith("fa_")
    again = run_main(capsys, "--db", db_url, "token", "create", "ci", "--scope", "read")
    assert again.code == 1 and "exists" in again.err and "Traceback" not in again.err
    bad = run_main(capsys, "--db", db_url, "token", "create", "x", "--scope", "root")
    assert bad.code == 2
    revoked = run_main(capsys, "--db", db_url, "token", "revoke", "ci", "--json")
    assert revoked.code == 0 and revoked.json()["revoked_at"]
    missing = run_main(capsys, "--db", db_url, "token", "revoke", "nobody")
    assert missing.code == 1 and "no token named" in missing.err
    with Ledger(db_url, config=Config()) as ledger:
        assert secret not in all_stored_text(ledger)
