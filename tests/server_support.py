"""Helpers of the HTTP API tests: tokens of every scope, an in-process client, a real ``serve`` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from failure_aware import Ledger
from failure_aware.storage.tables import HISTORY_TABLES

SCOPES = ("read", "record", "operate", "admin")
READY_SECONDS = 30.0


def make_tokens(ledger: Ledger) -> dict[str, str]:
    """One token per scope, named after it: ``{scope: secret}``."""
    return {scope: ledger.create_token(f"{scope}-token", scope, actor="tests").secret for scope in SCOPES}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def history_counts(ledger: Ledger) -> dict[str, int]:
    """Rows in each history table (what "nothing was written" compares)."""
    with ledger.store.read() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in HISTORY_TABLES
        }


def all_stored_text(ledger: Ledger) -> str:
    """Every value of every table, as text (to look for a secret that must not be there)."""
    parts: list[str] = []
    with ledger.store.read() as conn:
        for name in sorted(sa.inspect(conn).get_table_names()):
            for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def is_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is a problem+json of ``status`` (and ``code``); return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and isinstance(body["detail"], str)
    if code is not None:
        assert body["code"] == code, body
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A ``failure-aware serve`` running as a child process on 127.0.0.1; output goes to a file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "failure_aware", "--db", url, *args]


def start_server(url: str, workdir: Path, *args: str, name: str = "serve") -> ServerProcess:
    """Start ``serve`` on a free port and wait (bounded) until it answers."""
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command(url, "serve", "--port", str(port), *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.base}/api/v1/openapi.json", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"serve did not answer within {READY_SECONDS}s:\n{server.output()}")
