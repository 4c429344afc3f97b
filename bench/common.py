"""Shared harness of the benchmark scripts: timing, medians and ratios, throwaway databases, peak RSS.

Nothing here is part of the product. The rules every script follows (issue 5): both sides of a comparison run
in the same process run, on the same data, on the same machine, interleaved (ours, theirs, ours, theirs ...)
so that a noisy neighbour slows both; we report the median of ``k`` runs and the ratio of the medians, never
a lone absolute time.

Throwaway databases: SQLite files in a temporary directory removed at exit; PostgreSQL databases
``bench_<random>`` created with ``CREATE DATABASE`` on the server of ``--pg`` (an admin URL, by default the
local server's ``postgres`` database) and dropped at exit.

Peak RSS: ``peak_rss(script, function, kwargs)`` runs ``function(**kwargs)`` of a bench script in a fresh
Python process. That function prepares (imports, input) and returns the step to measure; the child resets
its high-water mark (``/proc/self/clear_refs``) just before the step and reads ``VmHWM`` from
``/proc/self/status`` right after it, so the number is the peak of the step alone (plus the interpreter and
what was already resident, reported separately as ``rss_before``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- command line --------------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every bench script shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_ADMIN", DEFAULT_PG_ADMIN),
                        help="admin URL of the PostgreSQL server where throwaway databases are created "
                             f"(default {DEFAULT_PG_ADMIN}, or $BENCH_PG_ADMIN)")
    parser.add_argument("--repeat", "-k", type=int, default=None,
                        help="runs per measurement; the median is reported (default depends on the size)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default both)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run: checks the suite works")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    return parser


def backends(args: argparse.Namespace) -> list[str]:
    """The backends asked for, validated."""
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in ("sqlite", "postgresql")]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; use sqlite and/or postgresql")
    return chosen


# -- timing ---------------------------------------------------------------------------------------------
@dataclass
class Series:
    """The wall times (seconds) of one measured step over several runs."""

    name: str
    work: int  # units of work per run (events, attempts), for throughput
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # this process's CPU time (user + system) per run

    @property
    def median(self) -> float:
        """The median time of the runs."""
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        """Units of work per second at the median time."""
        return self.work / self.median if self.median > 0 else float("inf")

    @property
    def cpu_median(self) -> float:
        """The median CPU time of this process over the runs (0 when not recorded)."""
        return statistics.median(self.cpu_times) if self.cpu_times else 0.0

    def spread(self) -> str:
        """``min-max`` of the runs, to show the noise next to the median."""
        return f"{min(self.times):.2f}-{max(self.times):.2f}"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"name": self.name, "work": self.work, "times_s": self.times, "median_s": self.median,
                "per_s": self.rate, "cpu_s": self.cpu_times}


def timed(step: Callable[[], object]) -> float:
    """Wall time of ``step()`` in seconds (see ``timed_cpu``)."""
    return timed_cpu(step)[0]


def timed_cpu(step: Callable[[], object]) -> tuple[float, float]:
    """Wall time and this process's CPU time (user + system) of ``step()``, in seconds.

    On a busy shared machine the CPU time moves far less than the wall time; it leaves out work done by
    other processes (a PostgreSQL server, worker processes), so it is shown next to the wall time, never
    instead of it.
    """
    gc.collect()  # so one run's garbage is not collected in the next one's time
    start, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - start, time.process_time() - cpu


def interleave(k: int, sides: Sequence[tuple[Series, Callable[[], Callable[[], object]]]]) -> None:
    """Run every side ``k`` times, alternating sides, appending each run's time to its ``Series``.

    Each side is ``(series, prepare)``: ``prepare()`` does the untimed setup of one run (a fresh database)
    and returns the step to time. Alternating spreads the machine's noise over both sides.
    """
    for _ in range(k):
        for series, prepare in sides:
            step = prepare()
            wall, cpu = timed_cpu(step)
            series.times.append(wall)
            series.cpu_times.append(cpu)


def ratio(ours: Series, theirs: Series) -> float:
    """Our throughput over theirs (> 1: we are faster), from the medians of the same run."""
    return theirs.median / ours.median if ours.median > 0 else float("inf")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what docs/benchmarks.md shows)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write results for later (``--json``); nothing when no path was given."""
    if path is not None:
        payload = {"machine": machine(), **payload}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    meminfo = Path("/proc/meminfo")
    mem_kb = 0
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


# -- throwaway databases ---------------------------------------------------------------------------------
class Databases:
    """Creates throwaway databases and removes them all on ``close`` (use as a context manager)."""

    def __init__(self, pg_admin: str = DEFAULT_PG_ADMIN) -> None:
        self.pg_admin = pg_admin
        self.tmp = Path(tempfile.mkdtemp(prefix="fa-bench-"))
        self.pg_names: list[str] = []

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def new(self, backend: str, label: str = "db") -> str:
        """The URL of a new, empty database of ``backend``."""
        return self.sqlite(label) if backend == "sqlite" else self.postgres(label)

    def sqlite(self, label: str = "db") -> str:
        """A SQLite URL of a file that does not exist yet."""
        path = self.tmp / f"{label}-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}"

    def postgres(self, label: str = "db") -> str:
        """A freshly created, empty PostgreSQL database; its URL (``postgresql://``)."""
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"bench_{label}_{uuid.uuid4().hex[:8]}".lower()
        with psycopg.connect(plain_pg(self.pg_admin), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.pg_names.append(name)
        return make_url(self.pg_admin).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Remove one database now (long runs create many; keep the disk free)."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(parsed.database) + suffix).unlink()
            return
        name = str(parsed.database)
        self._drop_pg(name)
        with contextlib.suppress(ValueError):
            self.pg_names.remove(name)

    def _drop_pg(self, name: str) -> None:
        import psycopg

        with psycopg.connect(plain_pg(self.pg_admin), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop every database made here."""
        for name in list(self.pg_names):
            with contextlib.suppress(Exception):
                self._drop_pg(name)
        self.pg_names.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def plain_pg(url: str) -> str:
    """A URL psycopg accepts itself (no SQLAlchemy ``+driver`` suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlite_file(url: str) -> str:
    """The file path of a ``sqlite:///`` URL."""
    return url.split("sqlite:///", 1)[1]


def pg_server_version(pg_admin: str) -> str:
    """``PostgreSQL 15.x`` of the server, or why it could not be asked."""
    try:
        import psycopg

        with psycopg.connect(plain_pg(pg_admin)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0]}" if row else "PostgreSQL (unknown version)"
    except Exception as exc:  # report, do not fail: a SQLite-only run needs no server
        return f"PostgreSQL unreachable ({str(exc).splitlines()[0]})"


# -- peak RSS in a fresh process ---------------------------------------------------------------------------
@dataclass
class Rss:
    """Peak resident memory of a measured step, in MiB."""

    peak_mib: float  # the process's high-water mark during the step (interpreter and prepared input included)
    before_mib: float  # resident just before the step

    @property
    def step_mib(self) -> float:
        """What the step added on top of what was resident before it."""
        return self.peak_mib - self.before_mib


def peak_rss(script: str, function: str, kwargs: dict[str, Any], timeout: float = 3600) -> Rss:
    """Run ``function(**kwargs)`` of ``bench/<script>`` in a fresh process and measure the step it returns."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss-child", script, function, json.dumps(kwargs)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"peak_rss child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return Rss(peak_mib=result["peak_kib"] / 1024, before_mib=result["before_kib"] / 1024)


def load_script(script: str) -> Any:
    """Import ``bench/<script>`` as a module (the bench folder is not a package)."""
    path = BENCH_DIR / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} missing from /proc/self/status")


def _rss_child(script: str, function: str, kwargs_json: str) -> None:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    step = getattr(load_script(script), function)(**json.loads(kwargs_json))
    gc.collect()
    before = _status_kib("VmRSS")
    # Reset the high-water mark to the current RSS (Linux >= 4.0), so the peak is the step's own. Where that
    # is refused, the peak also covers the preparation; before_kib still says how much that was.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    step()
    print(json.dumps({"peak_kib": _status_kib("VmHWM"), "before_kib": before}))


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--rss-child":
    _rss_child(sys.argv[2], sys.argv[3], sys.argv[4])


def wait_until_serving(process: subprocess.Popen[bytes], base: str, log: Path, seconds: float) -> None:
    """Wait for a ``failure-aware serve`` started as ``process`` to answer at ``base`` (its OpenAPI
    document), at most ``seconds``; stop it and exit with its log's tail when it dies or never answers."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_process(process)
    raise SystemExit(f"server did not start within {seconds}s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (killed if it has not exited 15 s later) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
