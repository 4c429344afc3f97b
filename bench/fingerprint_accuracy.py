"""Grouping accuracy of ``domain.fingerprint`` on Loghub-2k ground truth, side by side with Drain3.

Usage (from the repository root)::

    python bench/fingerprint_accuracy.py [--data DIR] [--no-drain] [--no-loo] [--repeat N] [--errors LOG]
                                         [--smoke]

``--smoke`` (what ``bench/run_all.py --smoke`` runs): one timed run, no Drain3, one round of the search.

``DIR`` defaults to ``../shared/datasets/loghub-2k`` relative to the repository root and must hold
``*_2k.log_structured.csv`` files (columns ``Content`` and ``EventId``).  The data is only read, never copied.

Grouping accuracy (GA): a message is correct when the set of messages sharing its fingerprint equals the set
of messages sharing its ground-truth ``EventId``; GA is the share of correct messages.

Drain3 runs with its default configuration (``drain3.TemplateMiner()``); each ``Content`` line is fed in file
order and messages are grouped by the id of the cluster Drain3 assigns them (a cluster keeps its id while its
template evolves).  Drain3's logging and any output it prints are silenced.

Throughput is total messages over total time, each log's time being the fastest of ``--repeat`` runs
(default 3; a fresh Drain3 miner each run), which keeps a busy machine from skewing the comparison.

**Leave-one-out.** The rules have knobs (``failure_aware.domain.fingerprint.Rules``). For each log, the knobs
are tuned on the *other* logs and the held-out log is scored with that setting: how well the rules carry to a
log never seen. Tuning is a deterministic greedy coordinate search: start from the rules of 0.1 (all new knobs
off), then, knob by knob in a fixed order, take the value with the best mean GA over the tuning logs (a change
must gain at least ``MIN_GAIN``, or the current value stays), for up to ``ROUNDS`` rounds or until a round
changes nothing. The same search on every log gives the setting the product's defaults (``RULES``) should
equal; the script says whether they do. The plain mean (the defaults scored on every log, the held-out one
included) is printed beside the leave-one-out mean. The rules' *forms* (their regular expressions) were
written looking at these logs, which no tuning can undo: that is why docs/benchmarks.md also reports a
development check on other Loghub logs.

Throughput compares the current rules with the rules of 0.1 (``bench/fingerprint_previous.py``, a frozen
copy) in the same run, runs interleaved, the fastest of ``--repeat`` counting for each; wall time and the
process's CPU time are both printed (on a shared, loaded machine the CPU time is the steadier figure).

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
from dataclasses import fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import fingerprint_previous  # noqa: E402

from failure_aware.domain.fingerprint import RULES, Masker, Rules, fingerprint, template  # noqa: E402

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


def run_ours(
    contents: Sequence[str], fp: Callable[[str], str] = fingerprint
) -> tuple[list[str], float, float]:
    """Fingerprints of ``contents``, the wall time and the process CPU time they took."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = [fp(c) for c in contents]
    return out, time.perf_counter() - start, time.process_time() - start_cpu


# The values each knob may take in the search, the rules of 0.1 first (the starting point).
SPACE: dict[str, tuple[bool | int, ...]] = {
    "dot_runs": (True, False),
    "structured": (True, False),
    "key_value": (True, False),
    "spaced_key_value": (False, True),
    "user_name": (True, False),
    "quoted": (True, False),
    "name_number": (True, False),
    "hosts_files": (True, False),
    "dotted_names": (0, 3, 4),
    "constants": (0, 1, 2),
    "between_prepositions": (False, True),
    "snake_words": (False, True),
    "collapse": (2, 1, 0),
    "max_tokens": (0, 8, 12, 16),
}
START = Rules(**{name: values[0] for name, values in SPACE.items()})  # type: ignore[arg-type]
ROUNDS = 3
MIN_GAIN = 0.0005
"""A knob moves only when it raises the mean GA of the tuning logs by at least this much: about 8 messages
of 2,000 in one log of 8 (a change that fits one or two statements of one log is noise, not a rule)."""

Logs = dict[str, tuple[list[str], list[str]]]


class Scorer:
    """GA of one log under one setting, each computed once (the folds share most of their search)."""

    def __init__(self, logs: Logs) -> None:
        self.logs = logs
        self.cache: dict[tuple[str, Rules], float] = {}
        self.maskers: dict[Rules, Masker] = {}

    def ga(self, log: str, rules: Rules) -> float:
        key = (log, rules)
        if key not in self.cache:
            masker = self.maskers.get(rules) or self.maskers.setdefault(rules, Masker(rules))
            contents, events = self.logs[log]
            self.cache[key] = grouping_accuracy(events, [masker.fingerprint(c) for c in contents])
        return self.cache[key]

    def mean(self, logs: Sequence[str], rules: Rules) -> float:
        return sum(self.ga(log, rules) for log in logs) / len(logs)

    def tune(self, logs: Sequence[str], rounds: int = ROUNDS) -> Rules:
        """The greedy coordinate search over ``SPACE`` on ``logs`` (deterministic)."""
        best = START
        best_score = self.mean(logs, best)
        for _ in range(rounds):
            changed = False
            for name, values in SPACE.items():
                for value in values:
                    if value == getattr(best, name):
                        continue
                    candidate = replace(best, **{name: value})
                    score = self.mean(logs, candidate)
                    if score >= best_score + MIN_GAIN:
                        best, best_score, changed = candidate, score, True
            if not changed:
                break
        return best


def describe(rules: Rules) -> str:
    """The knobs of ``rules`` that differ from the rules of 0.1."""
    changed = [f"{f.name}={getattr(rules, f.name)}" for f in fields(rules)
               if getattr(rules, f.name) != getattr(START, f.name)]
    return ", ".join(changed) or "(the rules of 0.1)"


def leave_one_out(logs: Logs, rounds: int = ROUNDS) -> None:
    """Print, per log, GA of the rules of 0.1, of the defaults, and leave-one-out; the settings chosen."""
    scorer = Scorer(logs)
    names = sorted(logs)
    start = time.perf_counter()
    tuned_all = scorer.tune(names, rounds)
    loo: dict[str, tuple[float, Rules]] = {}
    for held in names:
        rules = scorer.tune([n for n in names if n != held], rounds)
        loo[held] = (scorer.ga(held, rules), rules)
    elapsed = time.perf_counter() - start
    print("leave-one-out: knobs tuned on the other logs, the held-out log scored")
    print(f"{'log':<12} {'GA 0.1':>8} {'GA plain':>9} {'GA LOO':>8}  setting tuned without this log")
    for held in names:
        print(f"{held:<12} {scorer.ga(held, START):>8.4f} {scorer.ga(held, RULES):>9.4f} "
              f"{loo[held][0]:>8.4f}  {describe(loo[held][1])}")
    mean_start = scorer.mean(names, START)
    mean_plain = scorer.mean(names, RULES)
    mean_loo = sum(score for score, _ in loo.values()) / len(loo)
    print(f"{'mean':<12} {mean_start:>8.4f} {mean_plain:>9.4f} {mean_loo:>8.4f}")
    print()
    print(f"leave-one-out mean GA: {mean_loo:.4f}   plain mean GA (defaults, all logs): {mean_plain:.4f}")
    mean_all = scorer.mean(names, tuned_all)
    print(f"tuned on all {len(names)} logs: {describe(tuned_all)} (mean GA {mean_all:.4f})")
    verdict = "= the setting tuned on all logs" if tuned_all == RULES else "DIFFER from the tuned setting"
    print(f"product defaults (RULES): {describe(RULES)}  {verdict}")
    print(f"({len(scorer.maskers)} settings tried, {len(scorer.cache)} scores of a log, {elapsed:.1f} s)")
    print()


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


Row = tuple[str, float, float, float | None]


def measure(
    logs: Logs, drain: Callable[[Sequence[str]], tuple[list[int], float]] | None, repeat: int
) -> tuple[list[Row], int, tuple[float, float, float, float, float]]:
    """GA per log (ours, the rules of 0.1, Drain3), the message count, and the best times of each side:
    wall ours, wall 0.1, CPU ours, CPU 0.1, wall Drain3."""
    rows: list[Row] = []
    total = 0
    t_ours = 0.0
    t_previous = 0.0
    cpu_ours = 0.0
    cpu_previous = 0.0
    t_drain = 0.0
    for name, (contents, events) in logs.items():
        total += len(contents)
        ours: list[str] = []
        previous: list[str] = []
        best = {"ours": float("inf"), "previous": float("inf"), "ours cpu": float("inf"),
                "previous cpu": float("inf")}
        for _ in range(repeat):  # interleaved, so both sides see the same load
            ours, dt, cpu = run_ours(contents)
            best["ours"], best["ours cpu"] = min(best["ours"], dt), min(best["ours cpu"], cpu)
            previous, dt, cpu = run_ours(contents, fingerprint_previous.fingerprint)
            best["previous"], best["previous cpu"] = min(best["previous"], dt), min(best["previous cpu"], cpu)
        t_ours += best["ours"]
        t_previous += best["previous"]
        cpu_ours += best["ours cpu"]
        cpu_previous += best["previous cpu"]
        ga_drain: float | None = None
        if drain is not None:
            drain_runs = [drain(contents) for _ in range(repeat)]
            t_drain += min(dt for _, dt in drain_runs)
            ga_drain = grouping_accuracy(events, drain_runs[0][0])
        rows.append((name, grouping_accuracy(events, ours), grouping_accuracy(events, previous), ga_drain))

    return rows, total, (t_ours, t_previous, cpu_ours, cpu_previous, t_drain)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of *_2k.log_structured.csv")
    parser.add_argument("--no-drain", action="store_true", help="skip Drain3")
    parser.add_argument("--no-loo", action="store_true", help="skip the leave-one-out tuning")
    parser.add_argument("--errors", metavar="LOG", help="print the disagreeing groups of one log")
    parser.add_argument("--smoke", action="store_true", help="quick: one run, no Drain3, one search round")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per log; the fastest counts (default 3)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.no_drain = 1, True

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
    logs: Logs = {path.name.removesuffix(SUFFIX): load(path) for path in files}
    rows, total, times = measure(logs, drain, max(1, args.repeat))
    t_ours, t_previous, cpu_ours, cpu_previous, t_drain = times
    print(f"{'log':<12} {'GA ours':>8} {'GA 0.1':>8} {'GA Drain3':>10}")
    for name, ga_ours, ga_previous, ga_d in rows:
        print(f"{name:<12} {ga_ours:>8.4f} {ga_previous:>8.4f} {'-' if ga_d is None else f'{ga_d:.4f}':>10}")
    mean_ours = sum(r[1] for r in rows) / len(rows)
    mean_previous = sum(r[2] for r in rows) / len(rows)
    print(f"{'mean':<12} {mean_ours:>8.4f} {mean_previous:>8.4f}", end="")
    if drain is not None:
        mean_drain = sum(r[3] or 0.0 for r in rows) / len(rows)
        print(f" {mean_drain:>10.4f}")
    else:
        print()
    print()
    if not args.no_loo and len(logs) > 1:
        leave_one_out(logs, 1 if args.smoke else ROUNDS)
    print(f"throughput ours:      {rate(total, t_ours)}")
    print(f"throughput 0.1 rules: {rate(total, t_previous)}  (ours / 0.1: {t_previous / t_ours:.2f}x)")
    print(f"CPU time ours:        {rate(total, cpu_ours)}")
    print(f"CPU time 0.1 rules:   {rate(total, cpu_previous)}  (ours / 0.1: {cpu_previous / cpu_ours:.2f}x)")
    if drain is not None:
        print(f"throughput Drain3:    {rate(total, t_drain)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
