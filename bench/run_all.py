"""Run every benchmark script, at the issue's sizes or (``--smoke``) at tiny ones; non-zero exit if one fails.

Usage (from the repository root)::

    python bench/run_all.py [--smoke] [--pg ADMIN_URL] [--out DIR] [--only NAME[,NAME...]]

``--smoke`` is what CI runs: every script once at a tiny size (well under two minutes in all), to prove the
suite still works; its numbers mean nothing. Without it, each script runs at the sizes of issue 5 (this takes
hours on a 2-core machine; see bench/README.md). Each script's Markdown output is printed and also written to
``DIR/<script>.md`` (and its results to ``DIR/<script>.json``) when ``--out`` is given.

Scripts that are not there yet are listed as missing and skipped; a script that is there and fails (non-zero
exit, or no ``--smoke`` option in a smoke run) makes the whole run fail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Bench:
    """One script: the arguments of its full runs (one invocation each) and of its smoke run."""

    script: str
    full_runs: tuple[tuple[str, ...], ...] = ((),)
    smoke_args: tuple[str, ...] = ("--smoke",)
    takes_pg: bool = True  # whether it creates throwaway databases (gets --pg when it takes it)


BENCHES = (
    Bench("ingest_bench.py", (("--n", "100000,1000000", "--rss"),), smoke_args=("--smoke", "--rss")),
    Bench("attempt_cycle_bench.py", (("--n", "10000", "--workers", "1,4"),)),
    # correlation_bench.py has no --smoke: a tiny --n and one run is its smoke size. It uses SQLite unless
    # given --db postgresql://..., so PostgreSQL numbers come from running it by hand (see bench/README.md).
    Bench("correlation_bench.py", (("--n", "1000000"), ("--n", "10000000")),
          smoke_args=("--n", "3000", "--runs", "1"), takes_pg=False),
    Bench("health_bench.py", (("--n", "1000000,10000000", "--backends", "sqlite,postgresql"),)),
    Bench("fingerprint_accuracy.py", takes_pg=False),
    Bench("webhook_bench.py", (("--n", "3000"),)),
    # archive_bench.py: the issue asks for 5M of 10M events; its default --n is 1M (see docs/benchmarks.md).
    Bench("archive_bench.py", (("--n", "1000000", "--workers", "4", "--vacuum-full"),)),
    # big_ledger.py writes a kept database (--db URL): no full run here; its smoke checks its statements.
    Bench("big_ledger.py", full_runs=()),
    Bench("dashboard_bench.py", (("--n", "100000,1000000", "--backends", "sqlite,postgresql"),)),
    Bench("api_bench.py", (("--ops", "4000", "-k", "3", "--skip-latency"),
                           ("--n", "1000000,10000000", "--skip-throughput"))),
)


def supports(script: Path, option: str) -> bool:
    """Whether ``script --help`` mentions ``option`` (scripts written by others may not take ours)."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                         check=False)
    return option in out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every script works")
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_ADMIN", DEFAULT_PG_ADMIN),
                        help=f"PostgreSQL admin URL for throwaway databases (default {DEFAULT_PG_ADMIN})")
    parser.add_argument("--out", type=Path, default=None, help="write each script's output here")
    parser.add_argument("--only", default="", help="comma-separated script names (default: all)")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str, float]] = []
    for bench in BENCHES:
        if only and bench.script not in only and Path(bench.script).stem not in only:
            continue
        script = BENCH_DIR / bench.script
        if not script.exists():
            summary.append((bench.script, "missing (skipped)", 0.0))
            continue
        if args.smoke:
            if bench.smoke_args and not supports(script, bench.smoke_args[0]):
                summary.append((bench.script, f"FAILED: has no {bench.smoke_args[0]} option", 0.0))
                continue
            runs = [bench.smoke_args]
        else:
            runs = list(bench.full_runs)
        for number, extra in enumerate(runs, 1):
            command = [sys.executable, str(script), *extra]
            if bench.takes_pg and supports(script, "--pg"):
                command += ["--pg", args.pg]
            stem = script.stem + (f"-{number}" if len(runs) > 1 else "")
            if args.out and supports(script, "--json"):
                command += ["--json", str(args.out / f"{stem}.json")]
            shown = " ".join(["python", f"bench/{bench.script}", *command[2:]])
            print(f"\n## {bench.script}\n\n`{shown}`\n", flush=True)
            start = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            took = time.perf_counter() - start
            print(out.stdout, flush=True)
            if args.out:
                (args.out / f"{stem}.md").write_text(out.stdout, encoding="utf-8")
            if out.returncode != 0:
                print(out.stderr[-6000:], file=sys.stderr, flush=True)
            status = "ok" if out.returncode == 0 else f"FAILED (exit {out.returncode})"
            summary.append((" ".join([bench.script, *extra]), status, took))
    print("\n## Summary\n")
    for name, status, took in summary:
        print(f"- {name}: {status}" + (f" ({took:.0f} s)" if took else ""))
    return 1 if any(status.startswith("FAILED") for _, status, _ in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
