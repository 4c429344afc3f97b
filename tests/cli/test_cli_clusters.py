"""The correlation commands: correlate writes clusters; clusters, clusters show and --timeline only read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import dump, invoke, run_main

from failure_aware import Ledger
from failure_aware.config import Config
from failure_aware.domain.policy import PolicySet, RetryPolicy

OUTAGE_START = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)


def burst(db_url: str) -> None:
    """Three events of one type failing within two minutes (one cluster), and one lone failure."""
    patient = Config(policies=PolicySet(default=RetryPolicy(max_attempts=50)))
    with Ledger(db_url, config=patient, clock=lambda: OUTAGE_START + timedelta(hours=1)) as ledger:
        for i in range(3):
            event = ledger.detect("payment.webhook", key=f"p{i}", at=OUTAGE_START)
            ledger.report(event.id, False, error_type="ConnectionError",
                          error=f"503 from api-{i}.example after {20 + i}s",
                          at=OUTAGE_START + timedelta(seconds=30 * (i + 1)))
        lone = ledger.detect("crm.sync", key="c1", at=OUTAGE_START)
        ledger.report(lone.id, False, error_type="TimeoutError", error="slow", at=OUTAGE_START)


def test_correlate_then_list_show_and_annotate(db_url: str) -> None:
    burst(db_url)
    ran = invoke(db_url, "correlate", "--json")
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["added"] == 1 and report["clusters_total"] == 1

    listed = invoke(db_url, "clusters", "--json")
    clusters = json.loads(listed.stdout)
    assert [(c["event_type"], c["failure_count"], c["event_count"]) for c in clusters] == [
        ("payment.webhook", 3, 3)
    ]
    cluster_id = clusters[0]["id"]
    assert json.loads(invoke(db_url, "clusters", "--type", "crm.sync", "--json").stdout) == []

    noted = invoke(db_url, "annotate", "--cluster", cluster_id, "provider outage", "--author", "ops")
    assert noted.exit_code == 0, noted.output
    shown = json.loads(invoke(db_url, "clusters", "show", cluster_id, "--json").stdout)
    assert shown["cluster"]["id"] == cluster_id
    assert sorted(e["key"] for e in shown["events"]) == ["p0", "p1", "p2"]
    assert [n["text"] for n in shown["annotations"]] == ["provider outage"]
    assert "503 from" in invoke(db_url, "clusters", "show", cluster_id).stdout

    rebuilt = invoke(db_url, "correlate", "--rebuild", "--window", "5m", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    again = json.loads(invoke(db_url, "clusters", "--json").stdout)
    shown = json.loads(invoke(db_url, "clusters", "show", again[0]["id"], "--json").stdout)
    assert [n["text"] for n in shown["annotations"]] == ["provider outage"]  # survives the rebuild


def test_a_rule_change_without_rebuild_is_refused(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    burst(db_url)
    assert invoke(db_url, "correlate").exit_code == 0
    before = dump(db_url)
    refused = run_main(capsys, "--db", db_url, "correlate", "--window", "5m")
    assert refused.code == 1
    assert "--rebuild" in refused.err and "Traceback" not in refused.err
    assert dump(db_url) == before


def test_inspection_writes_nothing(db_url: str) -> None:
    burst(db_url)
    assert invoke(db_url, "correlate").exit_code == 0
    cluster_id = json.loads(invoke(db_url, "clusters", "--json").stdout)[0]["id"]
    before = dump(db_url)
    for args in (["clusters"], ["clusters", "--active"], ["clusters", "--since", "24h"],
                 ["clusters", "--timeline"], ["clusters", "show", cluster_id], ["show", "1"]):
        result = invoke(db_url, *args)
        assert result.exit_code == 0, (args, result.output)
    assert dump(db_url) == before


def test_timeline_draws_bars_and_marks_cluster_spans(db_url: str) -> None:
    burst(db_url)
    assert invoke(db_url, "correlate").exit_code == 0
    drawn = invoke(db_url, "clusters", "--timeline", "--buckets", "20").stdout
    assert "payment.webhook" in drawn and "crm.sync" in drawn
    assert "━" in drawn  # the payment cluster's span
    data = json.loads(invoke(db_url, "clusters", "--timeline", "--buckets", "20", "--json").stdout)
    totals = {row["event_type"]: sum(row["counts"]) for row in data["rows"]}
    assert totals == {"payment.webhook": 3, "crm.sync": 1}


def test_show_lists_the_clusters_of_an_event(db_url: str) -> None:
    burst(db_url)
    assert invoke(db_url, "correlate").exit_code == 0
    cluster_id = json.loads(invoke(db_url, "clusters", "--json").stdout)[0]["id"]
    assert json.loads(invoke(db_url, "show", "1", "--json").stdout)["cluster_ids"] == [cluster_id]
    assert json.loads(invoke(db_url, "show", "4", "--json").stdout)["cluster_ids"] == []


def test_unknown_cluster_is_a_clear_error(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    burst(db_url)
    missing = run_main(capsys, "--db", db_url, "clusters", "show", "c_0000000000000000")
    assert missing.code == 1
    assert "c_0000000000000000" in missing.err and "Traceback" not in missing.err
