"""``failure-aware serve`` as a real uvicorn process on 127.0.0.1 (a free port), on both backends: the
round trip, the login token, the address rule, secrets kept out of logs, two stateless servers on one
PostgreSQL database, and the hint when the ``server`` extra is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import all_stored_text, bearer, command, history_counts, is_problem, start_server

from failure_aware import Ledger
from failure_aware.config import Config

pytestmark = pytest.mark.slow  # each test starts Python processes (seconds each on a loaded machine)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_a_real_server_round_trip_keeps_the_secret_out_of_logs(db_url: str, workdir: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        secret = ledger.create_token("ci", "record").secret
    server = start_server(db_url, workdir)
    try:
        auth = bearer(secret)
        made = httpx.post(
            f"{server.base}/api/v1/events",
            headers=auth,
            json={"event_type": "pay.hook", "key": "k1", "payload": {"n": 1}},
        )
        assert made.status_code == 201
        event_id = made.json()["id"]
        failed = httpx.post(
            f"{server.base}/api/v1/events/{event_id}/attempts",
            headers=auth,
            json={"outcome": "failed", "error_type": "Timeout", "error": "slow"},
        )
        assert failed.status_code == 201 and failed.json()["state"] == "FAILED"
        listed = httpx.get(f"{server.base}/api/v1/events", headers=auth, params={"state": "FAILED"})
        assert [e["id"] for e in listed.json()["data"]] == [event_id]
        is_problem(httpx.get(f"{server.base}/api/v1/events"), 401)
        is_problem(httpx.post(f"{server.base}/api/v1/correlate", headers=auth, json={}), 403)
        # A secret in a query string (the dashboard's login link) is blanked in the access log.
        httpx.get(f"{server.base}/login", params={"token": secret})
        metrics = httpx.get(f"{server.base}/metrics", headers=auth)
        assert 'failure_aware_attempts_total{event_type="pay.hook",outcome="failed"} 1.0' in metrics.text
    finally:
        server.stop()
    log = server.output()
    assert "GET /api/v1/events" in log and "token=***" in log
    assert secret not in log
    with Ledger(db_url, config=Config()) as ledger:
        assert secret not in all_stored_text(ledger)
        assert ledger.verify().ok


def test_loopback_without_tokens_makes_a_one_off_login_token(
    db_url: str, backend: str, workdir: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("the rule reads only whether a token exists: the round trip covers PostgreSQL")
    server = start_server(db_url, workdir)
    try:
        found = re.search(r"login: (http://127\.0\.0\.1:\d+/login\?token=(\S+))", server.output())
        assert found, server.output()
        secret = found.group(2)
        assert httpx.get(f"{server.base}/api/v1/health", headers=bearer(secret)).status_code == 200
        made = httpx.post(f"{server.base}/api/v1/correlate", headers=bearer(secret), json={})
        assert made.status_code == 200  # admin
    finally:
        server.stop()
    with Ledger(db_url, config=Config()) as ledger:
        assert ledger.tokens() == []  # it lived in that process only
        assert secret not in all_stored_text(ledger)


def test_another_address_without_tokens_is_refused(db_url: str, backend: str, workdir: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the rule reads only whether a token exists: the round trip covers PostgreSQL")
    with Ledger(db_url, config=Config()) as ledger:
        ledger.detect("pay.hook", key="k")
        before = history_counts(ledger)
    done = subprocess.run(
        command(db_url, "serve", "--host", "0.0.0.0", "--port", "1"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to serve on 0.0.0.0 without API tokens" in done.stderr
    assert "Traceback" not in done.stderr
    with Ledger(db_url, config=Config()) as ledger:
        assert history_counts(ledger) == before and ledger.tokens() == []


@pytest.fixture
def two_servers(db_url: str, backend: str, workdir: Path) -> Iterator[tuple[str, str, str]]:
    if backend != "postgresql":
        pytest.skip("several servers on one database: PostgreSQL")
    with Ledger(db_url, config=Config()) as ledger:
        secret = ledger.create_token("runner", "record").secret
    first = start_server(db_url, workdir, name="a")
    try:
        second = start_server(db_url, workdir, name="b")
        try:
            yield first.base, second.base, secret
        finally:
            second.stop()
    finally:
        first.stop()


def test_two_servers_share_one_postgres_database(two_servers: tuple[str, str, str]) -> None:
    one, two, secret = two_servers
    auth = bearer(secret)
    event = httpx.post(f"{one}/api/v1/events", headers=auth, json={"event_type": "job", "key": "j1"}).json()
    assert (
        httpx.post(f"{two}/api/v1/events", headers=auth, json={"event_type": "job", "key": "j1"}).status_code
        == 200
    )
    claims = httpx.post(f"{one}/api/v1/claims", headers=auth, json={"limit": 1}).json()["data"]
    assert [c["event"]["id"] for c in claims] == [event["id"]]
    token = claims[0]["token"]
    finished = httpx.post(f"{two}/api/v1/claims/{token}", headers=auth, json={"outcome": "succeeded"})
    assert finished.status_code == 200 and finished.json()["state"] == "SUCCEEDED"
    is_problem(
        httpx.post(f"{one}/api/v1/claims/{token}", headers=auth, json={"outcome": "succeeded"}),
        409,
        "StaleClaim",
    )
    assert (
        httpx.get(f"{one}/api/v1/events/{event['id']}", headers=auth).json()["event"]["state"] == "SUCCEEDED"
    )


def test_serve_without_the_extra_names_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; from failure_aware.cli import main; "
        f"main(['--db', 'sqlite:///{tmp_path / 'x.db'}', 'serve'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert 'pip install "failure-aware[server]"' in done.stderr and "Traceback" not in done.stderr
