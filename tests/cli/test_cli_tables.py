"""Tables at 80 columns (what a pipe gets): ids, types and times whole, prose shortened; --format; text
from outside shown as typed. These test rendering, so one backend (SQLite) is enough."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_support import invoke

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy

START = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
LONG_TYPE = "payment.webhook.customer-notifications"
NARROW = {"COLUMNS": "80", "LINES": "40"}


def history(tmp_path: Path) -> str:
    """Two clusters of a long type name, with long error messages and markup-looking text."""
    url = f"sqlite:///{tmp_path / 'tables.db'}"
    patient = Config(policies=PolicySet(default=RetryPolicy(max_attempts=50)))
    with Ledger(url, config=patient, clock=lambda: START + timedelta(days=1)) as ledger:
        for burst in range(2):
            for i in range(3):
                event = ledger.detect(LONG_TYPE, key=f"[bold]key-{burst}-{i}[/] " + "k" * 60,
                                      at=START + timedelta(hours=burst))
                ledger.report(event.id, False, error_type="ConnectionError",
                              error="[red]upstream[/] refused the connection after a very long wait " * 3,
                              at=START + timedelta(hours=burst, seconds=30 * (i + 1)))
        ledger.annotate(1, "[/] closing tag that rich would choke on", author="ops")
        ledger.correlate()
    return url


def test_cluster_ids_types_and_times_stay_whole_at_80_columns(tmp_path: Path) -> None:
    url = history(tmp_path)
    listed = invoke(url, "clusters", env=NARROW)
    assert listed.exit_code == 0, listed.output
    ids = [c["id"] for c in json.loads(invoke(url, "clusters", "--json").stdout)]
    assert len(ids) == 2
    lines = listed.stdout.splitlines()
    for cluster_id in ids:
        [line] = [line for line in lines if cluster_id in line]  # on one line, whole
        assert LONG_TYPE in line and re.search(r"2026-01-02 0[45]:\d\d:\d\dZ", line)
    assert "…" in listed.stdout  # the prose column gave way instead
    assert re.search(r"┃ active ┃", listed.stdout)  # the activity column has a header


def test_events_table_keeps_types_and_times_and_cuts_messages(tmp_path: Path) -> None:
    url = history(tmp_path)
    listed = invoke(url, "events", env=NARROW)
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if LONG_TYPE in line]
    assert len(rows) == 6
    assert all(re.search(r"2026-01-02 0[45]:\d\d:\d\dZ", row) for row in rows)
    assert all("…" in row for row in rows)


def test_tsv_and_plain_keep_every_column_whole(tmp_path: Path) -> None:
    url = history(tmp_path)
    tsv = invoke(url, "events", "--format", "tsv", env=NARROW)
    assert tsv.exit_code == 0, tsv.output
    header, *rows = tsv.stdout.splitlines()
    assert header.split("\t")[:4] == ["id", "type", "key", "state"]
    assert len(rows) == 6 and all(len(row.split("\t")) == len(header.split("\t")) for row in rows)
    clusters = invoke(url, "clusters", "--format", "tsv", env=NARROW).stdout.splitlines()
    assert clusters[0].split("\t")[6] == "active"
    plain = invoke(url, "clusters", "--format", "plain", env=NARROW)
    assert "┃" not in plain.stdout and "│" not in plain.stdout
    ids = [c["id"] for c in json.loads(invoke(url, "clusters", "--json").stdout)]
    for cluster_id in ids:
        assert re.search(rf"^{cluster_id}\s+{re.escape(LONG_TYPE)}\s+2026-01-02", plain.stdout, re.MULTILINE)


def test_markup_from_outside_is_shown_as_typed(tmp_path: Path) -> None:
    url = history(tmp_path)
    shown = invoke(url, "show", "1", env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert "[bold]key-0-0[/]" in shown.stdout
    assert "[/] closing tag that rich would choke on" in shown.stdout
    assert "[red]upstream[/]" in shown.stdout
