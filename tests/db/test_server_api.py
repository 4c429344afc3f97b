"""The HTTP API in-process (the ASGI app through httpx), on SQLite and PostgreSQL from one body each.

Resources of SPEC 10, cursor pages that keep their filters, remote claims fenced like local ones,
problem+json errors with ``code``, and scopes: 401 without a token and 403 with too small a one, for
every operation of the OpenAPI document.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import FakeClock
from server_support import SCOPES, bearer, history_counts, is_problem, make_tokens
from starlette.testclient import TestClient

from failure_aware import Ledger
from failure_aware.domain.timeutil import format_time
from failure_aware.server import create_app


@dataclass
class Api:
    client: TestClient
    ledger: Ledger
    secrets: dict[str, str]
    clock: FakeClock

    def call(self, method: str, path: str, scope: str = "admin", **kwargs: Any) -> Any:
        return self.client.request(method, f"/api/v1{path}", headers=bearer(self.secrets[scope]), **kwargs)


@pytest.fixture
def api(ledger: Ledger, clock: FakeClock) -> Iterator[Api]:
    secrets = make_tokens(ledger)
    with TestClient(create_app(ledger), raise_server_exceptions=False) as client:
        yield Api(client, ledger, secrets, clock)


def detect(api: Api, event_type: str = "pay.hook", **body: Any) -> dict[str, Any]:
    response = api.call("POST", "/events", "record", json={"event_type": event_type, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_detect_is_idempotent_by_key(api: Api) -> None:
    first = detect(api, key="evt_1", payload={"amount": 12})
    again = api.call(
        "POST",
        "/events",
        "record",
        json={"event_type": "pay.hook", "key": "evt_1", "payload": {"amount": 99}},
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["payload"] == {"amount": 12}
    assert first["state"] == "PENDING" and first["detected_at"].endswith("Z")
    assert history_counts(api.ledger)["event_detected"] == 1
    # The token's name is the actor of what it does.
    shown = api.call("GET", f"/events/{first['id']}", "read").json()
    assert shown["transitions"][0]["actor"] == "record-token"


def test_pages_carry_their_filters(api: Api) -> None:
    ids_a = [detect(api, "a.type", key=f"a{i}")["id"] for i in range(7)]
    for i in range(3):
        detect(api, "b.type", key=f"b{i}")
    seen: list[int] = []
    response = api.call("GET", "/events", "read", params={"type": "a.type", "limit": 3})
    pages = 0
    while True:
        body = response.json()
        assert response.status_code == 200 and len(body["data"]) <= 3
        assert {e["event_type"] for e in body["data"]} == {"a.type"}
        seen += [e["id"] for e in body["data"]]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        # The cursor alone keeps the filter: the next page asks for nothing else.
        response = api.call("GET", "/events", "read", params={"cursor": body["next_cursor"], "limit": 3})
    assert pages == 3 and seen == sorted(ids_a, reverse=True)
    first = api.call("GET", "/events", "read", params={"type": "a.type", "limit": 3}).json()
    is_problem(
        api.call("GET", "/events", "read", params={"type": "b.type", "cursor": first["next_cursor"]}),
        422,
        "ValidationError",
    )
    is_problem(api.call("GET", "/events", "read", params={"cursor": "not-a-cursor"}), 422, "ValidationError")


@pytest.mark.parametrize(
    "params",
    [
        {"type": "no.such.type"},
        {"cluster": "c_0000000000000000"},
        {"fingerprint": "ffffffffffffffff"},
        {"state": "DEAD"},
        {"since": "2026-01-02T04:00:01Z"},
        {"until": "2000-01-01T00:00:00Z"},
    ],
)
def test_a_filter_that_matches_nothing_gives_an_empty_page(api: Api, params: dict[str, str]) -> None:
    detect(api, key="k1")
    body = api.call("GET", "/events", "read", params=params).json()
    assert body == {"data": [], "next_cursor": None, "has_more": False}


def test_report_outcomes_and_conflicts(api: Api) -> None:
    event = detect(api)
    failed = api.call(
        "POST",
        f"/events/{event['id']}/attempts",
        "record",
        json={"outcome": "failed", "error_type": "Timeout", "error": "took 30s"},
    )
    assert failed.status_code == 201 and failed.json()["state"] == "FAILED"
    assert failed.json()["attempt"]["actor"] == "record-token"
    early = api.call("POST", f"/events/{event['id']}/attempts", "record", json={"outcome": "succeeded"})
    is_problem(early, 409, "RetryTooEarly")
    # Over HTTP the refusal names the body's field, not the CLI's flag or Python's keyword.
    assert '"force": true' in early.json()["detail"]
    assert "--force" not in early.json()["detail"] and "force=True" not in early.json()["detail"]
    forced = api.call(
        "POST", f"/events/{event['id']}/attempts", "record", json={"outcome": "succeeded", "force": True}
    )
    assert forced.status_code == 201 and forced.json()["state"] == "SUCCEEDED"
    is_problem(
        api.call("POST", f"/events/{event['id']}/attempts", "record", json={"outcome": "failed"}),
        409,
        "InvalidTransition",
    )
    is_problem(
        api.call("POST", "/events/999999/attempts", "record", json={"outcome": "failed"}), 404, "NotFound"
    )
    detail = api.call("GET", f"/events/{event['id']}", "read").json()
    assert [a["outcome"] for a in detail["attempts"]] == ["failed", "succeeded"]
    assert detail["attempts"][1]["forced"] is True
    assert [t["to_state"] for t in detail["transitions"]] == ["PENDING", "FAILED", "SUCCEEDED"]


def test_remote_claims_are_fenced(api: Api) -> None:
    first, second = detect(api, key="one"), detect(api, key="two")
    claimed = api.call("POST", "/claims", "record", json={"limit": 5, "lease_seconds": 60})
    assert claimed.status_code == 200
    claims = claimed.json()["data"]
    assert sorted(c["event"]["id"] for c in claims) == [first["id"], second["id"]]
    assert {c["worker"] for c in claims} == {"record-token"}
    assert api.call("POST", "/claims", "record", json={"limit": 5}).json() == {"data": []}
    done = api.call("POST", f"/claims/{claims[0]['token']}", "record", json={"outcome": "succeeded"})
    assert done.status_code == 200 and done.json()["state"] == "SUCCEEDED"
    is_problem(
        api.call("POST", f"/claims/{claims[0]['token']}", "record", json={"outcome": "succeeded"}),
        409,
        "StaleClaim",
    )
    # The lease of the other one expires and recover takes it back: its token is stale from then on.
    api.clock.advance(61)
    api.ledger.recover()
    before = history_counts(api.ledger)
    is_problem(
        api.call(
            "POST", f"/claims/{claims[1]['token']}", "record", json={"outcome": "failed", "error": "late"}
        ),
        409,
        "StaleClaim",
    )
    assert history_counts(api.ledger) == before
    is_problem(api.call("POST", "/claims/not-a-token", "record", json={"outcome": "succeeded"}), 422)
    is_problem(api.call("POST", f"/claims/{'0' * 32}-424242", "record", json={"outcome": "succeeded"}), 404)
    typed = detect(api, "other.type", key="x")
    got = api.call("POST", "/claims", "record", json={"types": ["no.such", "other.type"], "limit": 3}).json()
    assert [c["event"]["id"] for c in got["data"]] == [typed["id"]]


def test_operator_actions(api: Api) -> None:
    event = detect(api, key="dies")
    for _ in range(6):
        api.call(
            "POST",
            f"/events/{event['id']}/attempts",
            "record",
            json={"outcome": "failed", "error_type": "Boom", "force": True},
        )
    note = api.call("POST", f"/events/{event['id']}/annotations", "operate", json={"text": "<b>looked</b>"})
    assert note.status_code == 201 and note.json()["author"] == "operate-token"
    assert note.json()["text"] == "<b>looked</b>"
    is_problem(api.call("POST", f"/events/{event['id']}/bury", "operate"), 409, "InvalidTransition")
    dry = api.call("POST", "/revive", "operate", json={"since": "2000-01-01T00:00:00Z", "dry_run": True})
    assert dry.json() == {"dry_run": True, "count": 1, "event_ids": [event["id"]]}
    assert api.ledger.get(event["id"]).state == "DEAD"
    revived = api.call("POST", f"/events/{event['id']}/revive", "operate", json={"reason": "fixed upstream"})
    assert revived.status_code == 200 and revived.json()["state"] == "PENDING"
    transitions = api.ledger.show(event["id"]).transitions
    assert transitions[-1].actor == "operate-token" and transitions[-1].reason.endswith("fixed upstream")
    bulk = api.call("POST", "/revive", "operate", json={"since": "2000-01-01T00:00:00Z", "dry_run": False})
    assert bulk.json()["count"] == 0


def make_cluster(api: Api) -> str:
    for i in range(4):
        event = detect(api, "burst.type", key=f"burst{i}")
        api.call(
            "POST",
            f"/events/{event['id']}/attempts",
            "record",
            json={"outcome": "failed", "error_type": "ConnectError", "error": "refused"},
        )
        api.clock.advance(5)
    report = api.call("POST", "/correlate", "operate", json={})
    assert report.status_code == 200 and report.json()["clusters_total"] == 1
    clusters = api.call("GET", "/clusters", "read").json()["data"]
    assert len(clusters) == 1
    return str(clusters[0]["id"])


def test_clusters_correlate_and_the_cluster_filter(api: Api) -> None:
    quiet = detect(api, "burst.type", key="quiet")
    cluster_id = make_cluster(api)
    detail = api.call("GET", f"/clusters/{cluster_id}", "read").json()
    assert len(detail["events"]) == 4 and detail["cluster"]["active"] is True
    members = api.call("GET", "/events", "read", params={"cluster": cluster_id}).json()["data"]
    assert len(members) == 4 and quiet["id"] not in [e["id"] for e in members]
    fingerprint = detail["attempts"][0]["fingerprint"]
    by_print = api.call("GET", "/events", "read", params={"fingerprint": fingerprint}).json()["data"]
    assert sorted(e["id"] for e in by_print) == sorted(e["id"] for e in members)
    note = api.call("POST", f"/clusters/{cluster_id}/annotations", "operate", json={"text": "DNS"})
    assert note.status_code == 201 and note.json()["cluster_event_type"] == "burst.type"
    is_problem(api.call("GET", "/clusters/c_nope", "read"), 404, "NotFound")
    assert api.call("GET", "/clusters", "read", params={"type": "other"}).json()["data"] == []
    timeline = api.call("GET", "/timeline", "read", params={"buckets": 10}).json()
    assert timeline["rows"][0]["event_type"] == "burst.type" and sum(timeline["rows"][0]["counts"]) == 4


def test_cluster_pages(api: Api) -> None:
    for burst in range(3):
        for i in range(3):
            event = detect(api, "burst.type", key=f"b{burst}-{i}")
            api.call(
                "POST",
                f"/events/{event['id']}/attempts",
                "record",
                json={"outcome": "failed", "error": "refused"},
            )
            api.clock.advance(1)
        api.clock.advance(3600)
    api.call("POST", "/correlate", "operate", json={"rebuild": True})
    every = [c["id"] for c in api.call("GET", "/clusters", "read").json()["data"]]
    paged: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        body = api.call("GET", "/clusters", "read", params=params).json()
        paged += [c["id"] for c in body["data"]]
        if not body["has_more"]:
            break
        params = {"limit": 2, "cursor": body["next_cursor"]}
    assert len(every) == 3 and paged == every


def test_health_is_200_whatever_the_verdict(api: Api) -> None:
    event = detect(api)
    api.call("POST", "/claims", "record", json={"limit": 1, "lease_seconds": 1})
    api.clock.advance(10)  # the claim is stuck now: CRITICAL
    response = api.call("GET", "/health", "read")
    assert response.status_code == 200
    assert response.json()["verdict"] == "CRITICAL" and response.json()["overall"]["stuck_claims"] == 1
    assert api.call("GET", "/health", "read", params={"type": "other"}).json()["verdict"] == "OK"
    assert event["id"]


def test_metrics_from_counters(api: Api) -> None:
    event = detect(api)
    api.call("POST", f"/events/{event['id']}/attempts", "record", json={"outcome": "failed", "error": "x"})
    detect(api, key="key-never-a-label")
    response = api.client.get("/metrics", headers=bearer(api.secrets["read"]))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'failure_aware_events{event_type="pay.hook",state="PENDING"} 1.0' in text
    assert 'failure_aware_events{event_type="pay.hook",state="FAILED"} 1.0' in text
    assert 'failure_aware_attempts_total{event_type="pay.hook",outcome="failed"} 1.0' in text
    assert 'failure_aware_health{verdict="OK"} 1.0' in text
    for name in (
        "retries_due",
        "retries_overdue",
        "claims_stuck",
        "oldest_unresolved_age_seconds",
        "active_clusters",
    ):
        assert re.search(rf'^failure_aware_{name}{{event_type="pay.hook"}} ', text, re.MULTILINE), name
    assert "key-never-a-label" not in text and str(event["id"]) not in re.findall(r'"(\d+)"', text)
    is_problem(api.client.get("/metrics"), 401, "Unauthorized")


def test_public_metrics_need_no_token(ledger: Ledger) -> None:
    with TestClient(create_app(ledger, public_metrics=True)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/api/v1/events").status_code == 401


# -- access: 401 and 403 for every operation -------------------------------------------------------------
NEEDED = {
    ("POST", "/api/v1/events"): "record",
    ("GET", "/api/v1/events"): "read",
    ("GET", "/api/v1/events/{event_id}"): "read",
    ("POST", "/api/v1/events/{event_id}/attempts"): "record",
    ("POST", "/api/v1/events/{event_id}/annotations"): "operate",
    ("POST", "/api/v1/events/{event_id}/revive"): "operate",
    ("POST", "/api/v1/events/{event_id}/bury"): "operate",
    ("POST", "/api/v1/claims"): "record",
    ("POST", "/api/v1/claims/{claim_token}"): "record",
    ("GET", "/api/v1/clusters"): "read",
    ("GET", "/api/v1/clusters/{cluster_id}"): "read",
    ("POST", "/api/v1/clusters/{cluster_id}/annotations"): "operate",
    ("POST", "/api/v1/correlate"): "operate",
    ("POST", "/api/v1/revive"): "operate",
    ("GET", "/api/v1/health"): "read",
    ("GET", "/api/v1/timeline"): "read",
    ("GET", "/metrics"): "read",
    ("GET", "/api/v1/incidents"): "read",
    ("GET", "/api/v1/incidents/{incident_id}"): "read",
}
BODIES = {
    "/api/v1/events": {"event_type": "x"},
    "/api/v1/revive": {"since": "2026-01-01T00:00:00Z", "dry_run": True},
}


def operations(api: Api) -> list[tuple[str, str]]:
    document = api.client.get("/api/v1/openapi.json").json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


def test_every_operation_is_in_the_scope_table(api: Api) -> None:
    assert set(operations(api)) == set(NEEDED)


def test_every_operation_needs_a_token_and_a_large_enough_scope(api: Api) -> None:
    event = detect(api)
    before = history_counts(api.ledger)
    for method, path in operations(api):
        url = (
            path.replace("{event_id}", str(event["id"]))
            .replace("{cluster_id}", "c_0000000000000000")
            .replace("{incident_id}", "i_0000000000000000")
            .replace("{claim_token}", f"{'0' * 32}-{event['id']}")
        )
        body = BODIES.get(
            path,
            {"outcome": "succeeded"}
            if "attempts" in path or "claims/" in path
            else {"text": "t"}
            if "annotations" in path
            else {},
        )
        kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
        for headers in ({}, {"Authorization": "Bearer fa_wrong"}, {"Authorization": "Basic abc"}):
            response = api.client.request(method, url, headers=headers, **kwargs)
            is_problem(response, 401, "Unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        needed = NEEDED[(method, path)]
        for scope in SCOPES[: SCOPES.index(needed)]:
            is_problem(
                api.client.request(method, url, headers=bearer(api.secrets[scope]), **kwargs),
                403,
                "Forbidden",
            )
    assert history_counts(api.ledger) == before


def test_a_revoked_token_stops_within_the_cache_time(ledger: Ledger) -> None:
    for seconds in (0.0, 0.3):
        with TestClient(create_app(ledger, token_cache_seconds=seconds)) as client:
            name = f"t{seconds}"
            secret = ledger.create_token(name, "read").secret
            assert client.get("/api/v1/events", headers=bearer(secret)).status_code == 200
            ledger.revoke_token(name)
            if seconds:
                assert client.get("/api/v1/events", headers=bearer(secret)).status_code == 200  # remembered
                time.sleep(seconds + 0.1)
            is_problem(client.get("/api/v1/events", headers=bearer(secret)), 401)


def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    is_problem(api.client.get("/api/v1/nothing-here"), 404, "NotFound")
    is_problem(api.client.delete("/api/v1/events"), 405, "MethodNotAllowed")
    is_problem(api.call("GET", "/events/0", "read"), 422, "ValidationError")
    is_problem(api.call("GET", "/events/abc", "read"), 422, "ValidationError")


def test_times_are_rfc3339(api: Api) -> None:
    event = detect(api, at=format_time(api.clock()))
    assert event["detected_at"] == "2026-01-02T04:00:00Z"
    is_problem(api.call("POST", "/events", "record", json={"event_type": "a", "at": 1767326400}), 422)
    is_problem(
        api.call("POST", "/events", "record", json={"event_type": "a", "at": "2026-01-02T04:00:00"}),
        422,
        "ValidationError",
    )


def test_incidents(api: Api) -> None:
    for i in range(4):
        for kind in ("pay.hook", "mail.send"):
            event = detect(api, kind, key=f"{kind}{i}")
            api.call("POST", f"/events/{event['id']}/attempts", "record",
                     json={"outcome": "failed", "error_type": "ConnectError", "error": "gateway refused"})
        api.clock.advance(5)
    assert api.call("POST", "/correlate", "operate", json={}).status_code == 200
    listed = api.call("GET", "/incidents", "read").json()
    assert len(listed["data"]) == 1 and listed["has_more"] is False
    incident = listed["data"][0]
    assert sorted(incident["event_types"]) == ["mail.send", "pay.hook"] and incident["active"] is True
    shown = api.call("GET", f"/incidents/{incident['id']}", "read").json()
    assert len(shown["clusters"]) == 2
    assert api.call("GET", "/incidents", "read", params={"type": "other"}).json()["data"] == []
    is_problem(api.call("GET", "/incidents/i_nope", "read"), 404, "NotFound")
