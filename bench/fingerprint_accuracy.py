"""Grouping accuracy of ``domain.fingerprint`` on Loghub-2k ground truth, side by side with Drain3.

Usage (from the repository root)::

    python bench/fingerprint_accuracy.py [--data DIR] [--no-drain] [--repeat N] [--errors LOG]

``DIR`` defaults to ``../shared/datasets/loghub-2k`` relative to the repository root and must hold
``*_2k.log_structured.csv`` files (columns ``Content`` and ``EventId``).  The data is only read, never copied.

Grouping accuracy (GA): a message is correct when the set of messages sharing its fingerprint equals the set
of messages sharing its ground-truth ``EventId``; GA is the share of correct messages.

Drain3 runs with its default configuration (``drain3.TemplateMiner()``); each ``Content`` line is fed in file
order and messages are grouped by the id of the cluster Drain3 assigns them (a cluster keeps its id while its
template evolves).  Drain3's logging and any output it prints are silenced.

Throughput is total messages over total time, each log's time being the fastest of ``--repeat`` runs
(default 3; a fresh Drain3 miner each run), which keeps a busy machine from skewing the comparison.

``--errors LOG`` prints, for one log, the ground-truth groups and fingerprint groups that disagree (a
debugging aid for the masking rules).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from failure_aware.domain.fingerprint import fingerprint, template  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "datasets" / "loghub-2k"
SUFFIX = "_2k.log_structured.csv"


def load(path: Path) -> tuple[list[str], list[str]]:
    """Return the ``Content`` and ``EventId`` columns of one structured Loghub CSV file."""
    contents: list[str] = []
    events: list[str] = []
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            contents.append(row["Content"])
            events.append(row["EventId"])
    return contents, events


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """GA: share of messages whose predicted group equals their ground-truth group (as sets of indexes)."""
    if not truth:
        return 1.0
    truth_groups: dict[Hashable, list[int]] = defaultdict(list)
    pred_groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        truth_groups[t].append(i)
        pred_groups[p].append(i)
    correct = 0
    for members in truth_groups.values():
        if pred_groups[predicted[members[0]]] == members:
            correct += len(members)
    return correct / len(truth)


def run_ours(contents: Sequence[str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = [fingerprint(c) for c in contents]
    return out, time.perf_counter() - start


def run_drain(contents: Sequence[str]) -> tuple[list[int], float]:
    from drain3 import TemplateMiner

    logging.disable(logging.CRITICAL)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        start = time.perf_counter()
        miner = TemplateMiner()
        ids: list[int] = [miner.add_log_message(c)["cluster_id"] for c in contents]
        elapsed = time.perf_counter() - start
    logging.disable(logging.NOTSET)
    return ids, elapsed


def show_errors(contents: Sequence[str], events: Sequence[str], limit: int = 40) -> None:
    """Print ground-truth groups that our fingerprints split or merge."""
    fps = [fingerprint(c) for c in contents]
    by_event: dict[str, list[int]] = defaultdict(list)
    by_fp: dict[str, list[int]] = defaultdict(list)
    for i, (e, f) in enumerate(zip(events, fps, strict=True)):
        by_event[e].append(i)
        by_fp[f].append(i)
    shown = 0
    for ev, members in sorted(by_event.items(), key=lambda kv: -len(kv[1])):
        fp_set = {fps[i] for i in members}
        if len(fp_set) == 1 and by_fp[fps[members[0]]] == members:
            continue
        shown += 1
        if shown > limit:
            break
        if len(fp_set) > 1:
            print(f"SPLIT {ev} ({len(members)} msgs) into {len(fp_set)} fingerprints:")
            seen: set[str] = set()
            for i in members:
                if fps[i] not in seen:
                    seen.add(fps[i])
                    print(f"    {template(contents[i])[:150]!r}")
                    if len(seen) >= 6:
                        break
        else:
            others = sorted({events[i] for i in by_fp[fps[members[0]]]} - {ev})
            shown_template = template(contents[members[0]])[:150]
            print(f"MERGED {ev} ({len(members)} msgs) with {others}: {shown_template!r}")
            for o in others[:3]:
                j = by_event[o][0]
                print(f"    {o}: {contents[j][:150]!r}")
            print(f"    {ev}: {contents[members[0]][:150]!r}")


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} messages/s ({seconds * 1e6 / count:.2f} µs/message)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of *_2k.log_structured.csv")
    parser.add_argument("--no-drain", action="store_true", help="skip Drain3")
    parser.add_argument("--errors", metavar="LOG", help="print the disagreeing groups of one log")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per log; the fastest counts (default 3)"
    )
    args = parser.parse_args(argv)

    files = sorted(args.data.glob(f"*{SUFFIX}"))
    if not files:
        print(f"no *{SUFFIX} files in {args.data}", file=sys.stderr)
        return 0

    if args.errors:
        for path in files:
            if path.name.removesuffix(SUFFIX).lower() == args.errors.lower():
                show_errors(*load(path))
        return 0

    drain: Callable[[Sequence[str]], tuple[list[int], float]] | None = None if args.no_drain else run_drain
    if drain is not None:
        try:
            import drain3  # noqa: F401
        except ImportError:
            print("drain3 is not installed (pip install drain3, or the 'bench' extra): Drain3 skipped")
            drain = None
    rows: list[tuple[str, float, float | None]] = []
    total = 0
    t_ours = 0.0
    t_drain = 0.0
    for path in files:
        contents, events = load(path)
        total += len(contents)
        runs = [run_ours(contents) for _ in range(max(1, args.repeat))]
        ours = runs[0][0]
        t_ours += min(dt for _, dt in runs)
        ga_drain: float | None = None
        if drain is not None:
            drain_runs = [drain(contents) for _ in range(max(1, args.repeat))]
            t_drain += min(dt for _, dt in drain_runs)
            ga_drain = grouping_accuracy(events, drain_runs[0][0])
        rows.append((path.name.removesuffix(SUFFIX), grouping_accuracy(events, ours), ga_drain))

    print(f"{'log':<12} {'GA ours':>8} {'GA Drain3':>10}")
    for name, ga_ours, ga_d in rows:
        print(f"{name:<12} {ga_ours:>8.4f} {'-' if ga_d is None else f'{ga_d:.4f}':>10}")
    mean_ours = sum(r[1] for r in rows) / len(rows)
    print(f"{'mean':<12} {mean_ours:>8.4f}", end="")
    if drain is not None:
        mean_drain = sum(r[2] or 0.0 for r in rows) / len(rows)
        print(f" {mean_drain:>10.4f}")
    else:
        print()
    print()
    print(f"throughput ours:   {rate(total, t_ours)}")
    if drain is not None:
        print(f"throughput Drain3: {rate(total, t_drain)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
