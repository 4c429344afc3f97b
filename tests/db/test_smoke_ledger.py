from __future__ import annotations

from failure_aware import Ledger, State


def test_detect_report_roundtrip(ledger: Ledger) -> None:
    event = ledger.detect("payment.webhook", {"amount": 12}, key="evt_1")
    assert event.state is State.PENDING
    result = ledger.report(event.id, False, error_type="TimeoutError", error="timed out after 30s")
    assert result.state is State.FAILED
    assert ledger.detect("payment.webhook", key="evt_1").id == event.id
