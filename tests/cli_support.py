"""Helpers for the CLI tests: run the CLI in-process or as a subprocess, and snapshot a whole database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from failure_aware.cli import cli, main

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """What a CLI run left: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as one JSON document (fails the test if anything else is there)."""
        return json.loads(self.out)


def invoke(db_url: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``failure-aware --db URL ARGS`` with click's test runner (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, env=env, catch_exceptions=False)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """Run ``failure_aware.cli.main`` (the console entry point, with its error boundary); it always exits."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    captured = capsys.readouterr()
    code = done.value.code
    return Outcome(code if isinstance(code, int) else (0 if code is None else 1), captured.out, captured.err)


def run_process(args: Sequence[str], *, cwd: Path, input: str | None = None,
                env: dict[str, str] | None = None) -> Outcome:
    """Run a real process (with ``FAILURE_AWARE_DB`` cleared unless ``env`` sets it)."""
    full_env = {k: v for k, v in os.environ.items() if k != "FAILURE_AWARE_DB"}
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    done = subprocess.run(list(args), cwd=cwd, input=input, capture_output=True, text=True, env=full_env,
                          timeout=120, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


def python_m(*args: str) -> list[str]:
    """The argv of ``python -m failure_aware ARGS``."""
    return [sys.executable, "-m", "failure_aware", *args]


def dump(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: two dumps are equal when nothing was written."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            tables: dict[str, list[tuple[Any, ...]]] = {}
            for name in sorted(sa.inspect(conn).get_table_names()):
                rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
                tables[name] = sorted((tuple(r) for r in rows), key=repr)
            return tables
    finally:
        engine.dispose()


def row_counts(db_url: str) -> dict[str, int]:
    """Rows per table."""
    return {name: len(rows) for name, rows in dump(db_url).items()}


def sqlite_file(db_url: str) -> Path | None:
    """The file of a SQLite URL, None for PostgreSQL."""
    url = sa.engine.make_url(db_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def table_names(path: Path) -> set[str]:
    """The tables of a SQLite file, read directly."""
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return names
