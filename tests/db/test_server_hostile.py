"""Hostile input over HTTP (../shared/datasets/hostile/strings.json, read at test time): every request
gets a 4xx problem+json, never a 5xx, and writes nothing; what a failure produced is recorded inertly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock
from server_support import bearer, history_counts, is_problem, make_tokens
from starlette.testclient import TestClient

from failure_aware import Ledger
from failure_aware.server import create_app

HOSTILE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "hostile" / "strings.json"


@pytest.fixture(scope="module")
def hostile() -> dict[str, Any]:
    if not HOSTILE.exists():
        pytest.skip(f"{HOSTILE} not found")
    data: dict[str, Any] = json.loads(HOSTILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def setup(ledger: Ledger, clock: FakeClock) -> Iterator[tuple[TestClient, dict[str, str], Ledger, int]]:
    secrets = make_tokens(ledger)
    clock.advance(days=400)  # "now" is after the times the dataset accepts
    event = ledger.detect("pay.hook", {"a": 1}, key="existing")
    with TestClient(create_app(ledger), raise_server_exceptions=False) as client:
        yield client, bearer(secrets["admin"]), ledger, event.id


def refused(
    client: TestClient, headers: dict[str, str], ledger: Ledger, method: str, path: str, **kwargs: Any
) -> dict[str, Any]:
    if "json" in kwargs:  # sent as JSON text with escapes: lone surrogates arrive as a client sends them
        kwargs["content"] = json.dumps(kwargs.pop("json")).encode()
        headers = {**headers, "content-type": "application/json"}
    before = history_counts(ledger)
    response = client.request(method, path, headers=headers, **kwargs)
    assert 400 <= response.status_code < 500, (path, kwargs.get("json"), response.status_code, response.text)
    body = is_problem(response, response.status_code)
    assert history_counts(ledger) == before, (path, kwargs.get("json"))
    return body


def test_named_text_is_refused(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, event_id = setup
    for text in hostile["text_refused_when_named_by_a_caller"]:
        for body in (
            {"event_type": text},
            {"event_type": "a.b", "key": text},
            {"event_type": "a.b", "payload": {text: 1}} if "\ud800" <= text[:1] <= "\udfff" else None,
        ):
            if body is not None:
                refused(client, headers, ledger, "POST", "/api/v1/events", json=body)
        refused(
            client, headers, ledger, "POST", f"/api/v1/events/{event_id}/annotations", json={"text": text}
        )


def test_refused_times(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, event_id = setup
    for moment in hostile["times"]["refused"]:
        refused(client, headers, ledger, "POST", "/api/v1/events", json={"event_type": "a.b", "at": moment})
        refused(
            client,
            headers,
            ledger,
            "POST",
            f"/api/v1/events/{event_id}/attempts",
            json={"outcome": "failed", "at": moment},
        )
        refused(client, headers, ledger, "GET", "/api/v1/events", params={"since": moment})


def test_accepted_times(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, _ledger, _ = setup
    for i, moment in enumerate(hostile["times"]["accepted_if_not_in_the_future"]):
        response = client.post(
            "/api/v1/events", headers=headers, json={"event_type": "a.b", "key": f"t{i}", "at": moment}
        )
        assert response.status_code == 201, (moment, response.text)


def test_refused_json_bodies(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, _ = setup
    for raw in hostile["json_bodies_refused"]:
        before = history_counts(ledger)
        response = client.post(
            "/api/v1/events", headers={**headers, "content-type": "application/json"}, content=raw.encode()
        )
        assert 400 <= response.status_code < 500, (raw, response.text)
        is_problem(response, response.status_code)
        assert history_counts(ledger) == before


def test_refused_integers(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, _ = setup
    for number in hostile["integers_refused_as_ids_or_limits"]:
        refused(client, headers, ledger, "GET", f"/api/v1/events/{number}")
        refused(
            client, headers, ledger, "POST", f"/api/v1/events/{number}/attempts", json={"outcome": "failed"}
        )
        refused(client, headers, ledger, "GET", "/api/v1/events", params={"limit": number})
        refused(client, headers, ledger, "POST", "/api/v1/claims", json={"limit": number})
        refused(
            client,
            headers,
            ledger,
            "POST",
            "/api/v1/revive",
            json={"since": "2026-01-01T00:00:00Z", "dry_run": True, "limit": number},
        )
    refused(client, headers, ledger, "POST", "/api/v1/claims", json={"limit": 5, "lease_seconds": 1e308})
    refused(client, headers, ledger, "POST", "/api/v1/claims", json={"limit": "5"})
    refused(client, headers, ledger, "POST", "/api/v1/claims", json={"limit": True})


def test_generated_monsters(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, event_id = setup
    sizes = hostile["json_generators"]
    depth = sizes["deeply_nested_payload_depth"]
    nested = '{"event_type": "a.b", "payload": ' + '{"x": ' * depth + "1" + "}" * depth + "}"
    json_headers = {**headers, "content-type": "application/json"}
    before = history_counts(ledger)
    response = client.post("/api/v1/events", headers=json_headers, content=nested.encode())
    assert 400 <= response.status_code < 500 and history_counts(ledger) == before
    big = json.dumps({"event_type": "a.b", "payload": {"blob": "x" * sizes["oversized_payload_bytes"]}})
    is_problem(
        client.post("/api/v1/events", headers=json_headers, content=big.encode()), 413, "PayloadTooLarge"
    )
    long_error = json.dumps({"outcome": "failed", "error": "e" * sizes["long_error_message_chars"]})
    is_problem(
        client.post(f"/api/v1/events/{event_id}/attempts", headers=json_headers, content=long_error.encode()),
        413,
    )
    assert history_counts(ledger) == before


def test_a_body_over_the_limit_is_refused_while_it_streams(setup: Any) -> None:
    client, headers, ledger, _ = setup
    before = history_counts(ledger)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        yield b'{"event_type": "a.b", "payload": {"blob": "'
        for _ in range(10):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    response = client.post(
        "/api/v1/events", headers={**headers, "content-type": "application/json"}, content=chunks()
    )
    is_problem(response, 413, "PayloadTooLarge")
    assert history_counts(ledger) == before


def test_failure_text_is_recorded_inertly(setup: Any, hostile: dict[str, Any]) -> None:
    client, headers, ledger, _ = setup
    texts = (
        hostile["text_recorded_when_produced_by_a_failure"]
        + hostile["markup_shown_as_text"]
        + hostile["sql_and_shell_looking"]
    )
    for i, text in enumerate(texts):
        event = ledger.detect("pay.hook", key=f"f{i}")
        body = json.dumps({"outcome": "failed", "error_type": "Weird", "error": text})  # \ud800 escapes
        response = client.post(
            f"/api/v1/events/{event.id}/attempts",
            content=body.encode(),
            headers={**headers, "content-type": "application/json"},
        )
        assert response.status_code == 201, (text, response.text)
        stored = response.json()["attempt"]["error"]
        assert "\x00" not in stored or stored == text  # NUL becomes U+FFFD under the Ledger's rule
        assert all(not "\ud800" <= c <= "\udfff" for c in stored)
    assert ledger.verify().ok
