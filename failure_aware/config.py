"""Configuration: retry policies and health thresholds from a TOML file.

``load_config(path)`` reads that file; ``load_config()`` looks in the working directory for
``failure-aware.toml``, then for a ``pyproject.toml`` with a ``[tool.failure-aware]`` table, and otherwise
returns the defaults (SPEC sections 4 and 6). The first file found wins; the files are not merged. Layout
(in ``pyproject.toml`` the same tables go under ``[tool.failure-aware]``, e.g.
``[tool.failure-aware.retry]``)::

    max_clock_skew = "5m"        # how far in the future a given time may lie (SPEC 3)

    [retry]                      # the default policy
    max_attempts = 6
    backoff = "exponential"      # or "fixed" / "schedule"
    base = "10s"
    factor = 3
    max_delay = "1h"
    jitter = "none"              # or "full" / "equal"
    non_retryable = ["ValueError"]
    max_retry_after = "24h"      # the cap on a failure's retry_after (SPEC 4)

    [retry.types."payment.webhook"]   # per event type; unspecified keys inherit the default
    schedule = ["30s", "2m", "10m"]   # a schedule implies backoff = "schedule"

    [health]
    overdue_after = "15m"
    critical_overdue = "1h"
    critical_failure_rate = 0.5
    degraded_failure_rate = 0.1
    min_attempts_for_rate = 10
    rate_window = "1h"
    dead_window = "24h"
    backlog_after = "15m"        # PENDING this long with no attempt: DEGRADED
    critical_backlog = "1h"      # ... this long: CRITICAL

    [webhooks."payment.webhook"]       # where the webhook handler delivers this type (docs/webhooks.md)
    url = "https://example.com/hooks"
    secret_env = "PAYMENT_WEBHOOK_SECRET"
    timeout = "15s"
    connect_timeout = "5s"

Durations are numbers of seconds or strings such as ``"90"``, ``"10s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``.
Every key is optional. Unknown keys, wrong types and bad values raise ``ValidationError`` naming the file
and the key. Reading the file is the only I/O here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failure_aware.domain import validation
from failure_aware.domain.durations import parse_duration
from failure_aware.domain.errors import ValidationError
from failure_aware.domain.health_rules import HealthRules
from failure_aware.domain.policy import PolicySet
from failure_aware.webhooks.settings import Endpoint, endpoints_from_table

__all__ = ["CONFIG_FILENAME", "Config", "config_from_mapping", "load_config"]

CONFIG_FILENAME = "failure-aware.toml"
_PYPROJECT = "pyproject.toml"
_TOOL_TABLE = "failure-aware"

# [health] key -> (HealthRules field, kind)
_HEALTH_KEYS: dict[str, tuple[str, str]] = {
    "overdue_after": ("overdue_after_seconds", "duration"),
    "critical_overdue": ("critical_overdue_seconds", "duration"),
    "critical_failure_rate": ("critical_failure_rate", "rate"),
    "degraded_failure_rate": ("degraded_failure_rate", "rate"),
    "min_attempts_for_rate": ("min_attempts_for_rate", "count"),
    "rate_window": ("rate_window_seconds", "duration"),
    "dead_window": ("dead_window_seconds", "duration"),
    "backlog_after": ("backlog_after_seconds", "duration"),
    "critical_backlog": ("critical_backlog_seconds", "duration"),
}
# The longest max_clock_skew accepted: a day of skew is already a broken clock.
MAX_CLOCK_SKEW_SECONDS = 86400.0


@dataclass(frozen=True)
class Config:
    """Retry policies, health thresholds and webhook endpoints (by event type); ``source`` is the file they
    came from (None: defaults)."""

    policies: PolicySet = field(default_factory=PolicySet)
    health: HealthRules = field(default_factory=HealthRules)
    source: str | None = None
    webhooks: Mapping[str, Endpoint] = field(default_factory=dict)
    #: How far in the future a given time may lie (``max_clock_skew``): ``detect --at``, ``report --at``,
    #: imported history. Every time lies within [1970-01-01T00:00:00Z, now + this].
    max_clock_skew_seconds: float = validation.DEFAULT_MAX_CLOCK_SKEW_SECONDS

    def __post_init__(self) -> None:
        """Check ``max_clock_skew_seconds``."""
        skew = self.max_clock_skew_seconds
        limit = MAX_CLOCK_SKEW_SECONDS
        if isinstance(skew, bool) or not isinstance(skew, int | float) or not 0 <= skew <= limit:
            raise ValidationError(f"max_clock_skew must be 0 to {limit:g} seconds (1 day), got {skew!r}")


def load_config(path: str | Path | None = None, cwd: Path | None = None) -> Config:
    """Load the configuration from ``path``, or find it in ``cwd`` (default: the working directory).

    ``path`` may be a ``failure-aware.toml``-style file or a ``pyproject.toml`` with a
    ``[tool.failure-aware]`` table; a relative ``path`` is taken relative to ``cwd``. Without ``path``,
    ``cwd / "failure-aware.toml"`` is used if it exists, else ``cwd / "pyproject.toml"`` if it has a
    ``[tool.failure-aware]`` table, else the defaults.

    Raises:
        ValidationError: the file is missing or unreadable, is not valid TOML, or holds a bad key or value.
    """
    directory = Path.cwd() if cwd is None else Path(cwd)
    if path is not None:
        file = directory / path
        document = _read_toml(file)
        tool = document.get("tool")
        in_pyproject = file.name == _PYPROJECT or (isinstance(tool, Mapping) and _TOOL_TABLE in tool)
        if not in_pyproject:
            return config_from_mapping(document, source=str(file))
        table = tool.get(_TOOL_TABLE) if isinstance(tool, Mapping) else None
        if table is None:
            raise ValidationError(f"{file}: no [tool.{_TOOL_TABLE}] table")
        return _from_tool_table(table, file)
    own_file = directory / CONFIG_FILENAME
    if own_file.is_file():
        return config_from_mapping(_read_toml(own_file), source=str(own_file))
    pyproject = directory / _PYPROJECT
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool")
        if isinstance(tool, Mapping) and _TOOL_TABLE in tool:
            return _from_tool_table(tool[_TOOL_TABLE], pyproject)
    return Config()


def config_from_mapping(data: Mapping[str, Any], source: str | None = None, key_prefix: str = "") -> Config:
    """Build a ``Config`` from the parsed layout (the module docstring's tables, as nested mappings).

    Error messages start with ``source`` (the file) and name the key, prefixed with ``key_prefix``.
    """
    where = f"{source}: " if source else ""
    for key in data:
        if key not in ("retry", "health", "max_clock_skew", "webhooks"):
            known = "retry, health, max_clock_skew, webhooks"
            raise ValidationError(f"{where}{key_prefix}{key}: unknown key (known: {known})")
    try:
        skew = validation.DEFAULT_MAX_CLOCK_SKEW_SECONDS
        if "max_clock_skew" in data:
            try:
                skew = parse_duration(data["max_clock_skew"])
            except ValidationError as exc:
                raise ValidationError(f"{key_prefix}max_clock_skew: {exc}") from exc
        retry = _table(data.get("retry", {}), f"{key_prefix}retry")
        health = _table(data.get("health", {}), f"{key_prefix}health")
        policies = PolicySet.from_mapping(retry, key_prefix=f"{key_prefix}retry")
        rules = _health_from_table(health, f"{key_prefix}health")
        webhooks = endpoints_from_table(data.get("webhooks", {}), f"{key_prefix}webhooks")
        config = Config(policies=policies, health=rules, source=source, max_clock_skew_seconds=skew,
                        webhooks=webhooks)
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc}") from exc
    return config


def _from_tool_table(table: Any, file: Path) -> Config:
    """Build the config from the ``[tool.failure-aware]`` table of ``file``."""
    prefix = f"tool.{_TOOL_TABLE}"
    if not isinstance(table, Mapping):
        raise ValidationError(f"{file}: {prefix} must be a table, got {table!r}")
    return config_from_mapping(table, source=str(file), key_prefix=f"{prefix}.")


def _read_toml(file: Path) -> dict[str, Any]:
    """Read and parse one TOML file, turning every failure into a ``ValidationError`` naming it."""
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ValidationError(f"{file}: configuration file not found") from exc
    except OSError as exc:
        raise ValidationError(f"{file}: cannot read configuration file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{file}: not valid UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{file}: not valid TOML: {exc}") from exc


def _table(value: Any, name: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a table, else raise ``ValidationError`` naming ``name``."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name} must be a table, got {value!r}")
    return value


def _health_from_table(table: Mapping[str, Any], where: str) -> HealthRules:
    """Build ``HealthRules`` from a ``[health]`` table; keys left out keep their defaults."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}"
        if key not in _HEALTH_KEYS:
            raise ValidationError(f"{name}: unknown key (known: {', '.join(_HEALTH_KEYS)})")
        field_name, kind = _HEALTH_KEYS[key]
        if kind == "duration":
            try:
                values[field_name] = parse_duration(value)
            except ValidationError as exc:
                raise ValidationError(f"{name}: {exc}") from exc
        elif kind == "rate" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationError(f"{name} must be a number between 0 and 1, got {value!r}")
        elif kind == "count" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(f"{name} must be an integer, got {value!r}")
        else:
            values[field_name] = value
    try:
        return HealthRules(**values)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from exc
