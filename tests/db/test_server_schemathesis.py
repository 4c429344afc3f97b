"""Schemathesis over the OpenAPI document: every operation, both backends, with an admin token.

Generated requests (valid and invalid) must never get a 5xx, and every response must match the schema
the document gives for it (status, content type, body). The examples per operation are bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from failure_aware import Ledger
from failure_aware.server import create_app

pytestmark = pytest.mark.slow
EXAMPLES = 8  # per operation, mode and backend: bounded so the whole file stays near a minute


@pytest.fixture
def fuzz_secret(ledger: Ledger) -> str:
    return ledger.create_token("fuzz", "admin").secret


@pytest.fixture
def api_schema(ledger: Ledger, fuzz_secret: str) -> Iterator[schemathesis.BaseSchema]:
    event = ledger.detect("pay.hook", {"a": 1}, key="seed")
    ledger.report(event.id, False, error_type="Timeout", error="slow")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(ledger))
    yield schema


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema, fuzz_secret: str, mode: GenerationMode
) -> None:
    headers = {"Authorization": f"Bearer {fuzz_secret}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 19  # SPEC 10's table and /metrics
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
