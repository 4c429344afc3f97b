"""Loading the configuration from failure-aware.toml, pyproject.toml or defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from failure_aware.config import Config, config_from_mapping, load_config
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.health_rules import HealthRules
from failure_aware.domain.policy import PolicySet, RetryPolicy

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

FULL = """
[retry]
max_attempts = 5
backoff = "exponential"
base = "20s"
factor = 2
max_delay = "30m"
jitter = "full"
non_retryable = ["ValueError"]

[retry.types."payment.webhook"]
schedule = ["30s", "2m", "10m"]

[health]
overdue_after = "10m"
critical_overdue = "2h"
critical_failure_rate = 0.6
degraded_failure_rate = 0.2
min_attempts_for_rate = 20
rate_window = "30m"
dead_window = "12h"
"""

EXPECTED_DEFAULT = RetryPolicy(
    max_attempts=5,
    base_seconds=20,
    factor=2,
    max_delay_seconds=1800,
    jitter="full",
    non_retryable=frozenset({"ValueError"}),
)
EXPECTED_HEALTH = HealthRules(
    overdue_after_seconds=600,
    critical_overdue_seconds=7200,
    critical_failure_rate=0.6,
    degraded_failure_rate=0.2,
    min_attempts_for_rate=20,
    rate_window_seconds=1800,
    dead_window_seconds=43200,
)


def as_pyproject(text: str) -> str:
    """Move the failure-aware.toml tables under [tool.failure-aware]."""
    moved = re.sub(r"^\[", "[tool.failure-aware.", text, flags=re.MULTILINE)
    return '[project]\nname = "someone-else"\n\n[tool.other]\nx = 1\n' + moved


def check_full(config: Config, source: Path) -> None:
    assert config.source == str(source)
    assert config.policies.default == EXPECTED_DEFAULT
    webhook = config.policies.for_type("payment.webhook")
    assert webhook.backoff == "schedule"
    assert webhook.schedule_seconds == (30, 120, 600)
    assert webhook.max_attempts == 5
    assert config.policies.for_type("other") == EXPECTED_DEFAULT
    assert config.health == EXPECTED_HEALTH


def test_failure_aware_toml_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_text(FULL)
    check_full(load_config(cwd=tmp_path), tmp_path / "failure-aware.toml")


def test_pyproject_tool_table_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(as_pyproject(FULL))
    check_full(load_config(cwd=tmp_path), tmp_path / "pyproject.toml")


def test_defaults_when_nothing_is_there(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path)
    assert config == Config()
    assert config.source is None
    assert config.policies == PolicySet()
    assert config.health == HealthRules()


def test_pyproject_without_the_tool_table_gives_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ruff]\nline-length = 99\n')
    assert load_config(cwd=tmp_path) == Config()


def test_failure_aware_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_text("[retry]\nmax_attempts = 3\n")
    (tmp_path / "pyproject.toml").write_text("[tool.failure-aware.retry]\nmax_attempts = 9\n")
    config = load_config(cwd=tmp_path)
    assert config.policies.default.max_attempts == 3
    assert config.source == str(tmp_path / "failure-aware.toml")


def test_explicit_path_of_either_layout(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(FULL)
    check_full(load_config(tmp_path / "mine.toml"), tmp_path / "mine.toml")
    check_full(load_config("mine.toml", cwd=tmp_path), tmp_path / "mine.toml")
    (tmp_path / "pyproject.toml").write_text(as_pyproject(FULL))
    check_full(load_config(str(tmp_path / "pyproject.toml")), tmp_path / "pyproject.toml")
    (tmp_path / "ci.toml").write_text(as_pyproject(FULL))
    check_full(load_config(tmp_path / "ci.toml"), tmp_path / "ci.toml")


def test_explicit_path_beats_the_search(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_text("[retry]\nmax_attempts = 3\n")
    (tmp_path / "other.toml").write_text("[retry]\nmax_attempts = 4\n")
    assert load_config("other.toml", cwd=tmp_path).policies.default.max_attempts == 4


def test_empty_file_gives_defaults_with_its_source(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_text("")
    assert load_config(cwd=tmp_path) == Config(source=str(tmp_path / "failure-aware.toml"))


def test_numbers_are_seconds(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_text("[retry]\nbase = 15\nmax_delay = 90.5\n")
    policy = load_config(cwd=tmp_path).policies.default
    assert (policy.base_seconds, policy.max_delay_seconds) == (15, 90.5)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    snippet = re.search(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert snippet is not None
    (tmp_path / "failure-aware.toml").write_text(snippet.group(1))
    config = load_config(cwd=tmp_path)
    assert config.policies.default == RetryPolicy(non_retryable=frozenset({"ValueError"}))
    assert config.policies.for_type("payment.webhook").schedule_seconds == (30, 120, 600)
    assert config.health == HealthRules()


def test_config_from_mapping_in_code() -> None:
    config = config_from_mapping({"retry": {"max_attempts": 2}, "health": {"min_attempts_for_rate": 5}})
    assert config.policies.default.max_attempts == 2
    assert config.health.min_attempts_for_rate == 5
    assert config.source is None


BAD = [
    ("[retri]\nmax_attempts = 3\n", "retri: unknown key"),
    ("[retry]\nmax_attempt = 3\n", "retry.max_attempt: unknown key"),
    ("[retry]\nmax_attempts = '6'\n", "retry.max_attempts must be an integer"),
    ("[retry]\nmax_attempts = 0\n", "retry: max_attempts must be an integer >= 1"),
    ("[retry]\nbase = 'ten seconds'\n", "retry.base: invalid duration 'ten seconds'"),
    ("[retry]\nmax_delay = '-1h'\n", "retry.max_delay: invalid duration '-1h': must not be negative"),
    ("[retry]\nmax_delay = '400d'\n", "retry: max_delay_seconds must be between 0"),
    ("[retry]\nfactor = 0.5\n", "retry: factor must be a finite number >= 1"),
    ("[retry]\nbackoff = 'linear'\n", "retry: backoff must be one of"),
    ("[retry]\nbackoff = 'schedule'\n", "retry: backoff 'schedule' needs a non-empty schedule"),
    ("[retry]\njitter = 'lots'\n", "retry: jitter must be one of"),
    ("[retry]\nnon_retryable = 'ValueError'\n", "retry.non_retryable must be a list"),
    ("retry = 3\n", "retry must be a table"),
    (
        "[retry.types.'payment.webhook']\nschedule = ['30s', 'soon']\n",
        r"\.schedule\[1\]: invalid duration 'soon'",
    ),
    (
        "[retry.types.'payment.webhook']\nretries = 3\n",
        r"retry\.types\.\"payment\.webhook\"\.retries: unknown key",
    ),
    ("[retry.types.'has space']\nmax_attempts = 3\n", "an event type is 1-200 characters"),
    ("[health]\noverdue = '15m'\n", "health.overdue: unknown key"),
    ("[health]\noverdue_after = 'later'\n", "health.overdue_after: invalid duration 'later'"),
    ("[health]\ncritical_failure_rate = '50%'\n", "health.critical_failure_rate must be a number"),
    ("[health]\ncritical_failure_rate = 1.5\n", "health: critical_failure_rate must be a fraction"),
    ("[health]\nmin_attempts_for_rate = 2.5\n", "health.min_attempts_for_rate must be an integer"),
    (
        "[health]\ndegraded_failure_rate = 0.7\n",
        "degraded_failure_rate .* must be at most critical_failure_rate",
    ),
    ("[health]\novedue_after = '1m'\n", "health.ovedue_after: unknown key"),
    (
        "[health]\noverdue_after = '2h'\n",
        "critical_overdue_seconds .* must be at least overdue_after_seconds",
    ),
    ("[health]\nrate_window = 0\n", "rate_window_seconds must be greater than 0"),
    ("health = 'ok'\n", "health must be a table"),
    ("[retry\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "complaint"), BAD)
def test_bad_failure_aware_toml_names_file_and_key(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "failure-aware.toml"
    path.write_text(text)
    with pytest.raises(ValidationError, match=complaint) as caught:
        load_config(cwd=tmp_path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("text", "complaint"), BAD[:-1])
def test_bad_pyproject_names_file_and_full_key(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        as_pyproject(text)
        .replace("\nretry = 3", "\n[tool.failure-aware]\nretry = 3")
        .replace("\nhealth = 'ok'", "\n[tool.failure-aware]\nhealth = 'ok'")
    )
    with pytest.raises(ValidationError, match=complaint) as caught:
        load_config(cwd=tmp_path)
    assert str(caught.value).startswith(f"{path}: tool.failure-aware.")


def test_tool_table_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool]\nfailure-aware = "yes"\n')
    with pytest.raises(ValidationError, match=r"tool.failure-aware must be a table"):
        load_config(cwd=tmp_path)


def test_explicit_pyproject_without_the_table_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ValidationError, match=r"no \[tool.failure-aware\] table"):
        load_config(tmp_path / "pyproject.toml")


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="configuration file not found") as caught:
        load_config(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ValidationError, match="cannot read configuration file"):
        load_config(tmp_path / "dir.toml")


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "failure-aware.toml").write_bytes(b"[retry]\nbase = '\xff'\n")
    with pytest.raises(ValidationError, match=r"failure-aware.toml: "):
        load_config(cwd=tmp_path)


def test_unknown_top_level_key_in_pyproject_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.failure-aware]\nretries = 3\n")
    with pytest.raises(ValidationError, match=r"tool.failure-aware.retries: unknown key"):
        load_config(cwd=tmp_path)
