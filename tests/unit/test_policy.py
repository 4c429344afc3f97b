"""Retry policy: SPEC section 4 delays, jitter, decisions, policy sets."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failure_aware.domain.errors import ValidationError
from failure_aware.domain.policy import (
    MAX_DELAY_SECONDS,
    Backoff,
    PolicySet,
    RetryPolicy,
    backoff_delay_seconds,
    decide_after_failure,
    jitter_fraction,
    nominal_delay_seconds,
)

AT = datetime(2026, 1, 2, 4, 45, 54, 971227, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- a slow, obviously correct reference -------------------------------------------------------------


def reference_delay(policy: RetryPolicy, n: int, event_id: int) -> float:
    """SPEC section 4 in exact arithmetic, step by step."""
    if policy.backoff == "schedule":
        entries = list(policy.schedule_seconds)
        while len(entries) < n:
            entries.append(entries[-1])
        d = Fraction(entries[n - 1])
    elif policy.backoff == "fixed":
        d = min(Fraction(policy.max_delay_seconds), Fraction(policy.base_seconds))
    else:
        d = Fraction(policy.base_seconds)
        for _ in range(n - 1):
            if d >= Fraction(policy.max_delay_seconds):
                break  # the cap is reached; multiplying further by factor >= 1 cannot bring it back down
            d *= Fraction(policy.factor)
        d = min(Fraction(policy.max_delay_seconds), d)
    digest = hashlib.blake2b(f"{event_id}:{n}".encode(), digest_size=8).hexdigest()
    u = Fraction(int(digest, 16) // 2**11, 2**53)
    if policy.jitter == "full":
        d = u * d
    elif policy.jitter == "equal":
        d = d / 2 + u * d / 2
    return float(d)


delays = st.floats(min_value=0, max_value=MAX_DELAY_SECONDS, allow_nan=False)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    """Any valid policy."""
    backoff: Backoff = draw(st.sampled_from(["exponential", "fixed", "schedule"]))
    schedule = tuple(draw(st.lists(delays, min_size=1, max_size=6))) if backoff == "schedule" else ()
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=30)),
        backoff=backoff,
        base_seconds=draw(delays),
        factor=draw(st.floats(min_value=1, max_value=50)),
        max_delay_seconds=draw(delays),
        schedule_seconds=schedule,
        jitter=draw(st.sampled_from(["none", "full", "equal"])),
    )


failure_numbers = st.integers(min_value=1, max_value=80)
event_ids = st.integers(min_value=1, max_value=2**63 - 1)


# --- exact SPEC delays -------------------------------------------------------------------------------


def test_default_exponential_delays_and_cap() -> None:
    policy = RetryPolicy()
    got = [backoff_delay_seconds(policy, n, event_id=1) for n in range(1, 10)]
    assert got == [10, 30, 90, 270, 810, 2430, 3600, 3600, 3600]


def test_exponential_with_custom_numbers() -> None:
    policy = RetryPolicy(base_seconds=2, factor=2, max_delay_seconds=100)
    assert [nominal_delay_seconds(policy, n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 64, 100, 100]


def test_factor_one_is_constant() -> None:
    policy = RetryPolicy(base_seconds=7, factor=1)
    assert {nominal_delay_seconds(policy, n) for n in (1, 2, 50, 10**9)} == {7}


def test_huge_failure_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(factor=1000)
    assert nominal_delay_seconds(policy, 10**6) == 3600
    assert nominal_delay_seconds(policy, 10**18) == 3600
    tiny_base = RetryPolicy(base_seconds=5e-324, factor=1.5, max_delay_seconds=MAX_DELAY_SECONDS)
    assert nominal_delay_seconds(tiny_base, 10**6) == MAX_DELAY_SECONDS


def test_base_above_cap_is_capped() -> None:
    assert nominal_delay_seconds(RetryPolicy(base_seconds=500, max_delay_seconds=60), 1) == 60
    assert nominal_delay_seconds(RetryPolicy(base_seconds=500, max_delay_seconds=60), 3) == 60


def test_fixed_delays_are_base_capped_by_max_delay() -> None:
    assert [nominal_delay_seconds(RetryPolicy(backoff="fixed", base_seconds=45), n) for n in (1, 2, 9)] == [
        45,
        45,
        45,
    ]
    capped = RetryPolicy(backoff="fixed", base_seconds=7200, max_delay_seconds=3600)
    assert nominal_delay_seconds(capped, 4) == 3600


def test_schedule_entries_then_the_last_one_repeats() -> None:
    policy = RetryPolicy(backoff="schedule", schedule_seconds=(30, 120, 600))
    assert [nominal_delay_seconds(policy, n) for n in range(1, 7)] == [30, 120, 600, 600, 600, 600]


def test_schedule_is_not_capped_by_max_delay() -> None:
    policy = RetryPolicy(backoff="schedule", schedule_seconds=(7200,), max_delay_seconds=60)
    assert nominal_delay_seconds(policy, 1) == 7200


@pytest.mark.parametrize("bad", [0, -1, True, 1.0])
def test_failure_number_must_be_a_positive_integer(bad: int) -> None:
    with pytest.raises(ValidationError, match="failure_number"):
        nominal_delay_seconds(RetryPolicy(), bad)


# --- jitter ------------------------------------------------------------------------------------------


def test_jitter_fraction_is_pinned() -> None:
    # Pinned values: a change here changes every user's retry schedule.
    digest = hashlib.blake2b(b"42:1", digest_size=8).digest()
    assert jitter_fraction(42, 1) == (int.from_bytes(digest, "big") >> 11) / 2**53
    pinned = {
        (42, 1): "0x1.84c9af1928846p-2",
        (1, 1): "0x1.1fe82a944891cp-1",
        (1, 2): "0x1.85be3e25a7d23p-1",
        (2**62, 9): "0x1.9b19c35bd1f60p-2",
    }
    assert {key: jitter_fraction(*key).hex() for key in pinned} == pinned


@given(policies(), failure_numbers, event_ids)
def test_jittered_delays_stay_in_bounds_and_repeat(policy: RetryPolicy, n: int, event_id: int) -> None:
    d = nominal_delay_seconds(policy, n)
    delay = backoff_delay_seconds(policy, n, event_id)
    if policy.jitter == "none":
        assert delay == d
    elif policy.jitter == "full":
        assert 0 <= delay <= d
    else:
        assert d / 2 <= delay <= d
    assert backoff_delay_seconds(policy, n, event_id) == delay


@given(policies(), failure_numbers, event_ids)
def test_matches_the_reference(policy: RetryPolicy, n: int, event_id: int) -> None:
    expected = reference_delay(policy, n, event_id)
    assert math.isclose(backoff_delay_seconds(policy, n, event_id), expected, rel_tol=1e-12, abs_tol=1e-300)


@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=1, max_value=20), event_ids)
def test_jitter_fraction_in_unit_interval(_: float, n: int, event_id: int) -> None:
    assert 0 <= jitter_fraction(event_id, n) < 1


def test_jitter_is_the_same_in_another_process() -> None:
    policy_args = "backoff='exponential', jitter='full', base_seconds=10, factor=3, max_delay_seconds=3600"
    cases = [(event_id, n) for event_id in (1, 7, 123456789, 2**62) for n in (1, 2, 5, 9)]
    script = (
        "from failure_aware.domain.policy import RetryPolicy, backoff_delay_seconds\n"
        f"p = RetryPolicy({policy_args})\n"
        f"print([backoff_delay_seconds(p, n, e).hex() for e, n in {cases!r}])\n"
    )
    local = RetryPolicy(jitter="full")
    expected = str([backoff_delay_seconds(local, n, e).hex() for e, n in cases])
    for seed in ("0", "12345"):  # a different str hash seed must not matter
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert result.stdout.strip() == expected


# --- decisions ---------------------------------------------------------------------------------------


def test_first_failure_retries_after_the_first_delay() -> None:
    decision = decide_after_failure(RetryPolicy(), 1, "TimeoutError", AT, event_id=1)
    assert decision.retry and not decision.dead
    assert decision.next_retry_at == AT + timedelta(seconds=10)
    assert decision.delay_seconds == 10
    assert decision.next_retry_at.tzinfo is UTC


def test_dead_at_max_attempts() -> None:
    policy = RetryPolicy()
    assert decide_after_failure(policy, 5, None, AT, 1).retry
    decision = decide_after_failure(policy, 6, None, AT, 1)
    assert decision.dead
    assert decision.reason == "max_attempts (6) reached"
    assert decision.next_retry_at is None
    assert decision.delay_seconds is None
    assert decide_after_failure(policy, 7, None, AT, 1).dead


def test_single_attempt_policy_dies_on_first_failure() -> None:
    assert (
        decide_after_failure(RetryPolicy(max_attempts=1), 1, None, AT, 1).reason == "max_attempts (1) reached"
    )


def test_non_retryable_error_type_dies_at_once() -> None:
    policy = RetryPolicy(non_retryable=frozenset({"ValueError"}))
    decision = decide_after_failure(policy, 1, "ValueError", AT, 1)
    assert decision.dead
    assert decision.reason == "non-retryable error type ValueError"
    assert decide_after_failure(policy, 1, "KeyError", AT, 1).retry
    assert decide_after_failure(policy, 1, None, AT, 1).retry


def test_non_retryable_wins_over_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=2, non_retryable=frozenset({"ValueError"}))
    assert (
        decide_after_failure(policy, 2, "ValueError", AT, 1).reason == "non-retryable error type ValueError"
    )


def test_next_retry_at_is_utc_whatever_the_input_zone() -> None:
    paris = timezone(timedelta(hours=1))
    decision = decide_after_failure(RetryPolicy(), 2, None, AT.astimezone(paris), 1)
    assert decision.next_retry_at == AT + timedelta(seconds=30)
    assert decision.next_retry_at is not None and decision.next_retry_at.utcoffset() == timedelta(0)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        decide_after_failure(RetryPolicy(), 1, None, datetime(2026, 1, 1), 1)


@given(policies(), failure_numbers, event_ids, st.sampled_from([None, "ValueError", "TimeoutError"]))
def test_decision_rule(policy: RetryPolicy, n: int, event_id: int, error_type: str | None) -> None:
    decision = decide_after_failure(policy, n, error_type, AT, event_id)
    assert decision.dead == (n >= policy.max_attempts or error_type in policy.non_retryable)
    if decision.retry:
        assert decision.next_retry_at == AT + timedelta(seconds=backoff_delay_seconds(policy, n, event_id))


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"base_seconds": -1}, "base_seconds"),
        ({"base_seconds": float("nan")}, "base_seconds"),
        ({"max_delay_seconds": -5}, "max_delay_seconds"),
        ({"max_delay_seconds": float("inf")}, "max_delay_seconds"),
        ({"max_delay_seconds": MAX_DELAY_SECONDS + 1}, "365 days"),
        ({"factor": 0.5}, "factor"),
        ({"factor": float("inf")}, "factor"),
        ({"factor": float("nan")}, "factor"),
        ({"backoff": "linear"}, "backoff must be one of exponential, fixed, schedule"),
        ({"jitter": "some"}, "jitter must be one of none, full, equal"),
        ({"backoff": "schedule"}, "non-empty schedule"),
        ({"schedule_seconds": (10,)}, "backoff is 'exponential'"),
        ({"backoff": "schedule", "schedule_seconds": (10, -1)}, "schedule_seconds entry"),
        ({"non_retryable": "ValueError"}, "non_retryable"),
        ({"non_retryable": frozenset({""})}, "non_retryable"),
        ({"non_retryable": frozenset({1})}, "non_retryable"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_collections_are_normalised() -> None:
    policy = RetryPolicy(
        non_retryable={"A", "B"},  # type: ignore[arg-type]
        backoff="schedule",
        schedule_seconds=[1, 2],  # type: ignore[arg-type]
    )
    assert policy.non_retryable == frozenset({"A", "B"})
    assert policy.schedule_seconds == (1.0, 2.0)
    hash(policy)


# --- policy sets -------------------------------------------------------------------------------------


def test_policy_set_falls_back_to_the_default() -> None:
    special = RetryPolicy(max_attempts=2)
    policies_ = PolicySet(default=RetryPolicy(), overrides={"payment.webhook": special})
    assert policies_.for_type("payment.webhook") is special
    assert policies_.for_type("other") == RetryPolicy()
    assert PolicySet().for_type("anything") == RetryPolicy()


def test_policy_set_is_read_only() -> None:
    overrides = {"a": RetryPolicy(max_attempts=2)}
    policies_ = PolicySet(overrides=overrides)
    overrides["b"] = RetryPolicy()
    assert "b" not in policies_.overrides
    with pytest.raises(TypeError):
        policies_.overrides["c"] = RetryPolicy()  # type: ignore[index]
    assert policies_ == PolicySet(overrides={"a": RetryPolicy(max_attempts=2)})


def test_policy_set_refuses_bad_overrides() -> None:
    with pytest.raises(ValidationError, match="event type"):
        PolicySet(overrides={"bad type!": RetryPolicy()})
    with pytest.raises(ValidationError, match="must be a RetryPolicy"):
        PolicySet(overrides={"ok": 3})  # type: ignore[dict-item]


def test_from_mapping_inherits_the_default() -> None:
    policies_ = PolicySet.from_mapping(
        {
            "max_attempts": 4,
            "base": "5s",
            "jitter": "equal",
            "non_retryable": ["ValueError"],
            "types": {
                "payment.webhook": {"schedule": ["30s", "2m", "10m"]},
                "sync": {"backoff": "fixed", "max_attempts": 9},
            },
        }
    )
    assert policies_.default == RetryPolicy(
        max_attempts=4, base_seconds=5, jitter="equal", non_retryable=frozenset({"ValueError"})
    )
    webhook = policies_.for_type("payment.webhook")
    assert webhook.backoff == "schedule"
    assert webhook.schedule_seconds == (30, 120, 600)
    assert (webhook.max_attempts, webhook.jitter, webhook.non_retryable) == (
        4,
        "equal",
        frozenset({"ValueError"}),
    )
    assert policies_.for_type("sync") == RetryPolicy(
        max_attempts=9,
        backoff="fixed",
        base_seconds=5,
        jitter="equal",
        non_retryable=frozenset({"ValueError"}),
    )


def test_from_mapping_switching_away_from_an_inherited_schedule_drops_it() -> None:
    policies_ = PolicySet.from_mapping({"schedule": [1, 2], "types": {"a": {"backoff": "fixed"}, "b": {}}})
    assert policies_.default.backoff == "schedule"
    assert policies_.for_type("a").schedule_seconds == ()
    assert policies_.for_type("b").schedule_seconds == (1, 2)


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ({"max_attempt": 3}, "retry.max_attempt: unknown key"),
        ({"max_attempts": "6"}, "retry.max_attempts must be an integer"),
        ({"max_attempts": 0}, "retry: max_attempts must be an integer >= 1"),
        ({"base": "soon"}, "retry.base: invalid duration 'soon'"),
        ({"schedule": ["1s", "x"]}, r"retry.schedule\[1\]: invalid duration 'x'"),
        ({"schedule": "1s"}, "retry.schedule must be a list"),
        ({"schedule": ["1s"], "backoff": "fixed"}, "a schedule implies backoff 'schedule'"),
        ({"factor": "3"}, "retry.factor must be a number"),
        ({"jitter": 1}, "retry.jitter must be a string"),
        ({"non_retryable": "ValueError"}, "retry.non_retryable must be a list"),
        ({"types": []}, "retry.types must be a table"),
        ({"types": {"a": 1}}, 'retry.types."a" must be a table'),
        ({"types": {"a b": {}}}, 'retry.types."a b": an event type'),
        ({"types": {"a": {"types": {}}}}, 'retry.types."a".types: unknown key'),
        ({"types": {"a": {"base": "-1s"}}}, 'retry.types."a".base: invalid duration'),
    ],
)
def test_from_mapping_errors_name_the_key(table: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        PolicySet.from_mapping(table)
