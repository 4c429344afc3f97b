"""The CLI as users run it: real processes (``python -m failure_aware``, the ``failure-aware`` script and
``python cli.py`` from the repository root) on both backends."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from cli_support import REPO_ROOT, dump, python_m, run_process

from failure_aware import Ledger
from failure_aware.config import Config


def console_script() -> str:
    found = shutil.which("failure-aware")
    if found is None:
        pytest.skip("the failure-aware console script is not installed (pip install -e .)")
    return found


def test_python_m_and_console_script_record_and_show(db_url: str, tmp_path: Path) -> None:
    detected = run_process(python_m("--db", db_url, "detect", "payment.webhook", "--key", "evt_1",
                                    "--payload", '{"amount": 12}', "--json"), cwd=tmp_path)
    assert detected.code == 0, detected.err
    event = detected.json()
    assert event["state"] == "PENDING" and event["payload"] == {"amount": 12}

    reported = run_process([console_script(), "--db", db_url, "report", str(event["id"]), "--failed",
                            "--error-type", "TimeoutError", "--error", "timed out", "--json"], cwd=tmp_path)
    assert reported.code == 0, reported.err
    assert reported.json()["state"] == "FAILED"

    shown = run_process(python_m("show", str(event["id"]), "--json"), cwd=tmp_path,
                        env={"FAILURE_AWARE_DB": db_url})
    assert shown.code == 0, shown.err
    assert [a["error_type"] for a in shown.json()["attempts"]] == ["TimeoutError"]
    assert list(tmp_path.iterdir()) == []  # the default database in the working directory was not used


def test_seed_cli_from_the_repository_root(db_url: str) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.detect("sync.record")
    before = dump(db_url)
    status = run_process([sys.executable, "cli.py", "--db", db_url, "--status", "--json"], cwd=REPO_ROOT)
    assert status.code == 0, status.err
    assert status.json()["by_state"]["PENDING"] == 1
    assert dump(db_url) == before

    helped = run_process([sys.executable, "cli.py", "--help"], cwd=REPO_ROOT)
    assert helped.code == 0 and "failure-aware --help" in helped.out


def test_errors_in_a_real_process_are_one_line_without_traceback(db_url: str, tmp_path: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        ledger.detect("sync.record")
    before = dump(db_url)
    unknown = run_process(python_m("--db", db_url, "show", "424242"), cwd=tmp_path)
    assert unknown.code == 1 and unknown.out == ""
    assert unknown.err.strip().count("\n") == 0 and "424242" in unknown.err and "Traceback" not in unknown.err
    usage = run_process(python_m("--db", db_url, "report", "1"), cwd=tmp_path)
    assert usage.code == 2 and "--ok" in usage.err and "Traceback" not in usage.err
    seed = run_process([sys.executable, str(REPO_ROOT / "cli.py"), "--db", db_url, "--annotate", "424242",
                        "x"], cwd=tmp_path)
    assert seed.code == 1 and "424242" in seed.err and "Traceback" not in seed.err
    assert dump(db_url) == before


def test_export_piped_into_import(db_url: str, tmp_path: Path) -> None:
    with Ledger(db_url, config=Config()) as ledger:
        for key in ("a", "b"):
            ledger.report(ledger.detect("sync.record", key=key).id, False, error="boom")
    exported = run_process(python_m("--db", db_url, "export"), cwd=tmp_path)
    assert exported.code == 0 and len(exported.out.splitlines()) == 2
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    imported = run_process(python_m("--db", copy, "import", "-", "--json"), cwd=tmp_path, input=exported.out)
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["imported"] == 2
    assert run_process(python_m("--db", copy, "export"), cwd=tmp_path).out == exported.out
