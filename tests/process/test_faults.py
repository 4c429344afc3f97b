"""Fault injection (SPEC section 14): workers killed and cut off from the database mid-run.

Worker processes (the real CLI) run a handler that logs every run to a file before doing anything. While
they work, the test SIGKILLs one now and then (and starts another), and on PostgreSQL also terminates
their database connections (``pg_terminate_backend`` of their own backends only, found by an
``application_name`` unique to the test). An operator's ``recover`` runs meanwhile. At the end, exactly:

- every event SUCCEEDED once: none lost, none stuck, no duplicate success;
- every attempt recorded as succeeded or failed matches a logged handler run (none for a handler that
  never ran), and every logged run has its attempt recorded, or was cut short by a kill (abandoned);
- abandoned attempts are at most the worker's concurrency per kill (a kill costs only what was running);
- ``verify`` is clean.

A second test starts its own PostgreSQL server (initdb in a temporary folder, its own port), restarts it
under running workers and checks they finish every event without losing or repeating one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import IN_CI

from failure_aware import Ledger, Outcome, State
from failure_aware.config import Config
from failure_aware.storage.tables import attempt

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = 2
LEASE = "1s"
CONFIG = """[retry]
max_attempts = 50
backoff = "fixed"
base = "0.2s"
"""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]


def start_worker(
    url: str, cwd: Path, runlog: Path, *extra: str, sleep: float = 0.01
) -> subprocess.Popen[bytes]:
    """A worker process (the CLI), its handler logging each run to ``runlog``."""
    command = [sys.executable, "-m", "failure_aware", "--db", url, "worker", "--json"]
    command += ["--handler", "tests.handlers_fixture:logged", "--concurrency", str(CONCURRENCY)]
    command += ["--lease", LEASE, "--poll", "0.1s", "--max-db-wait", "60s", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "FA_TEST_RUNLOG": str(runlog), "FA_TEST_SLEEP": str(sleep)}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until_catching_sigterm(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until the process handles SIGTERM itself (Linux: its SigCgt mask), i.e. it is working."""
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if not status.exists():
            time.sleep(1)  # no /proc: give it a while
            return
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.05)


def runs_logged(runlog: Path) -> Counter[tuple[int, int]]:
    lines = runlog.read_text(encoding="utf-8").split() if runlog.exists() else []
    return Counter(zip(map(int, lines[::2]), map(int, lines[1::2]), strict=True))


def attempts(ledger: Ledger) -> list[sa.Row[object]]:
    with ledger.store.read() as conn:
        return list(conn.execute(sa.select(attempt.c.event_id, attempt.c.number, attempt.c.outcome)))


def reconcile(ledger: Ledger, ids: list[int], runlog: Path, kills: int) -> None:
    """The exact checks of the module docstring."""
    assert {e.state for e in map(ledger.get, ids)} == {State.SUCCEEDED}  # none lost or stuck
    rows = attempts(ledger)
    successes = Counter(r.event_id for r in rows if r.outcome == Outcome.SUCCEEDED)
    assert sorted(successes) == ids and set(successes.values()) == {1}  # no duplicate success
    runs = runs_logged(runlog)
    assert set(runs.values()) == {1}  # no attempt number ran twice
    recorded = {(r.event_id, r.number) for r in rows if r.outcome != Outcome.ABANDONED}
    abandoned = {(r.event_id, r.number) for r in rows if r.outcome == Outcome.ABANDONED}
    assert recorded <= set(runs), f"attempts recorded for handlers that never ran: {recorded - set(runs)}"
    assert set(runs) - recorded <= abandoned  # a run without its outcome was cut short by a kill
    assert len(abandoned) <= CONCURRENCY * kills, f"{len(abandoned)} abandoned after {kills} kills"
    report = ledger.verify()
    assert report.ok, report.problems


def finish(ledger: Ledger, url: str, cwd: Path, runlog: Path, ids: list[int], deadline: float) -> None:
    """Recover what the kills left and run what is still due, until every event is done."""
    while time.monotonic() < deadline:
        time.sleep(1.1)  # leases of the killed workers' claims (1 s) run out
        ledger.recover(actor="test")
        if all(ledger.get(i).state is State.SUCCEEDED for i in ids):
            return
        proc = start_worker(url, cwd, runlog, "--once")
        proc.communicate(timeout=120)
    pytest.fail("events still unfinished at the deadline")


def test_workers_killed_and_cut_off_mid_run_lose_and_repeat_nothing(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    events = 300 if backend == "postgresql" else 150
    app = f"fa_fault_{uuid.uuid4().hex[:8]}"
    url = db_url
    if backend == "postgresql":  # the workers' connections carry a name only this test uses
        named = sa.engine.make_url(db_url).update_query_dict({"application_name": app})
        url = named.render_as_string(hide_password=False)
    (tmp_path / "failure-aware.toml").write_text(CONFIG, encoding="utf-8")
    runlog = tmp_path / "runs.log"
    rng = random.Random(7)
    with Ledger(db_url, config=Config()) as ledger:
        ledger.import_events({"event_type": "fault.job", "key": f"k{n}"} for n in range(events))
        ids = sorted(e.id for e in ledger.events(limit=events))
        admin = sa.create_engine(sa.engine.make_url(db_url)) if backend == "postgresql" else None
        workers = [start_worker(url, tmp_path, runlog) for _ in range(3)]
        kills = cuts = 0
        deadline = time.monotonic() + 20
        try:
            for proc in workers:
                wait_until_catching_sigterm(proc)
            for turn in itertools.count():
                enough = kills >= 3 and (cuts >= 2 or admin is None)
                if time.monotonic() > deadline or (enough and len(runs_logged(runlog)) >= events * 0.5):
                    break
                time.sleep(rng.uniform(0.3, 0.8))
                if admin is not None and turn % 2 == 0:  # PostgreSQL: cut, kill, cut, kill, ...
                    with admin.begin() as conn:  # only this test's worker connections
                        cuts += len(
                            conn.execute(
                                sa.text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = :app AND pid <> pg_backend_pid()"
                                ),
                                {"app": app},
                            ).all()
                        )
                    continue
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                kills += 1
                workers.append(start_worker(url, tmp_path, runlog))
            for proc in workers:
                wait_until_catching_sigterm(proc)  # started up: SIGTERM now means "finish and exit"
            for proc in workers:  # a graceful stop: the JSON stream ends with the summary
                proc.send_signal(signal.SIGTERM)
            for proc in workers:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err.decode()
                assert b'"kind": "summary"' in out.splitlines()[-1]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
            if admin is not None:
                admin.dispose()
        assert kills >= 3
        if backend == "postgresql":
            assert cuts >= 2  # connections were cut, and the workers went on (none exited)
        finish(ledger, url, tmp_path, runlog, ids, time.monotonic() + 60)
        reconcile(ledger, ids, runlog, kills)


# -- a PostgreSQL server restarted under running workers --------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnServer:
    """A PostgreSQL server of the test's own: initdb in a temporary folder, its own port. Run as the
    ``postgres`` OS user when the test runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="fa-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.dir,
            timeout=120,
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    bindir = _pg_bin()
    if bindir is None:
        message = "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl)"
        if IN_CI:
            pytest.fail(message + " (CI=true: the restart test must run)")
        pytest.skip(message)
    server = OwnServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def test_workers_keep_running_across_a_server_restart(own_server: OwnServer, tmp_path: Path) -> None:
    events = 150
    runlog = tmp_path / "runs.log"
    (tmp_path / "failure-aware.toml").write_text(CONFIG, encoding="utf-8")
    with Ledger(own_server.url, config=Config()) as ledger:
        ledger.import_events({"event_type": "restart.job", "key": f"k{n}"} for n in range(events))
        ids = sorted(e.id for e in ledger.events(limit=events))
        ledger.close()  # our own pool must not hold connections across the restart either
        workers = [start_worker(own_server.url, tmp_path, runlog, "--once", sleep=0.05) for _ in range(2)]
        try:
            deadline = time.monotonic() + 30
            while len(runs_logged(runlog)) < events // 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            own_server.stop("fast")  # every connection is cut; for 2 s nothing answers
            time.sleep(2)
            own_server.start()
            results = [proc.communicate(timeout=120) for proc in workers]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
        for proc, (out, err) in zip(workers, results, strict=True):
            assert proc.returncode == 0, err.decode()  # they rode it out
            assert b"database unavailable" in err and b"database back" in err
            assert b'"kind": "summary"' in out.splitlines()[-1]
    with Ledger(own_server.url, config=Config()) as ledger:
        ledger.recover(actor="test")  # nothing should be left for it; if it were, reconcile shows it
        reconcile(ledger, ids, runlog, kills=0)
