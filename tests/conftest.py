"""Shared fixtures: every storage test body runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``FAILURE_AWARE_TEST_PG`` (default: the local server, database ``test``). Each test
gets its own schema there, dropped afterwards. Locally a missing server skips the PostgreSQL half; under
``CI=true`` it fails the run, so CI can never pass without having tested PostgreSQL.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from failure_aware import Ledger
from failure_aware.config import Config

PG_URL = os.environ.get("FAILURE_AWARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["sqlite", "postgresql"]

TIERS = ("unit", "db", "cli", "process")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier: the folder it lives in (unit, db, cli, process)."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@functools.cache
def _pg_problem() -> str:
    """Why PostgreSQL cannot be used ("" when it can); asked once per test session."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}"
    return ""


def require_postgres() -> None:
    """Skip (locally) or fail (CI) when PostgreSQL is not reachable."""
    problem = _pg_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(problem)


class FakeClock:
    """A clock the test moves by hand; starts at a fixed UTC time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self.now += timedelta(seconds=seconds, **kwargs)
        return self.now


def make_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A fresh, empty database of ``backend``: its URL and a cleanup token for ``drop_database``."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "failure-aware.db"
        return f"sqlite:///{path}", None
    require_postgres()
    schema = f"fa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), (admin, schema)


def drop_database(token: object) -> None:
    """Remove what ``make_database`` created (PostgreSQL schemas; SQLite files go with tmp_path)."""
    if token is None:
        return
    admin, schema = token  # type: ignore[misc]
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this run of a storage test."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an empty database, on each backend in turn."""
    url, token = make_database(backend, tmp_path_factory)
    yield url
    drop_database(token)


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock."""
    return FakeClock()


@pytest.fixture
def ledger(db_url: str, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger over a fresh database with default config and the fake clock."""
    with Ledger(db_url, config=Config(), clock=clock) as opened:
        yield opened


def url_quote(value: str) -> str:
    """Quote a value for a URL query (used by tests that build URLs)."""
    return quote(value, safe="")
