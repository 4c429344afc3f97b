"""``[webhooks."TYPE"]`` in the configuration, and reading secrets from the environment (SPEC 12)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from failure_aware.cli.handlers import load_handler
from failure_aware.config import load_config
from failure_aware.domain.errors import ValidationError
from failure_aware.webhooks import Endpoint, WebhookHandler

DOCS = Path(__file__).resolve().parents[2] / "docs"
RAW = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(RAW).decode()

GOOD = """
[webhooks."payment.webhook"]
url = "https://user:pw@hooks.example.com:8443/in?token=abc"
secret_env = "PAY_SECRET"
timeout = "20s"
connect_timeout = 2

[webhooks."crm.sync"]
url = "http://127.0.0.1:9000/crm"
secret_env = "CRM_SECRET"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "failure-aware.toml").write_text(text)
    return tmp_path


def test_endpoints_load_with_defaults(tmp_path: Path) -> None:
    config = load_config(cwd=write(tmp_path, GOOD))
    pay, crm = config.webhooks["payment.webhook"], config.webhooks["crm.sync"]
    assert (pay.timeout_seconds, pay.connect_timeout_seconds, pay.secret_env) == (20, 2, "PAY_SECRET")
    assert (crm.timeout_seconds, crm.connect_timeout_seconds) == (15, 5)  # SPEC 12 defaults
    assert pay.shown_url == "https://hooks.example.com:8443/in"  # no credentials, no query


def test_loading_the_config_does_not_need_the_secrets(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAY_SECRET", raising=False)
    assert "payment.webhook" in load_config(cwd=write(tmp_path, GOOD)).webhooks


@pytest.mark.parametrize(("text", "complaint"), [
    ('[webhooks."a.b"]\nsecret_env = "S"\n', r'webhooks."a.b": url is required'),
    ('[webhooks."a.b"]\nurl = "http://x/"\n', r'webhooks."a.b": secret_env is required'),
    ('[webhooks."a.b"]\nurl = "ftp://x/"\nsecret_env = "S"\n', r"url must be an http:// or https:// URL"),
    ('[webhooks."a.b"]\nurl = "http:///nohost"\nsecret_env = "S"\n', r"with a host"),
    ('[webhooks."a.b"]\nurl = "http://x:99999/"\nsecret_env = "S"\n', r"invalid port"),
    ('[webhooks."a.b"]\nurl = "http://x/"\nsecret_env = "no-dash"\n', r"secret_env must name"),
    ('[webhooks."a.b"]\nurl = "http://x/"\nsecret_env = "S"\ntimeout = "0s"\n', r"timeout must be more"),
    ('[webhooks."a.b"]\nurl = "http://x/"\nsecret_env = "S"\ntimeout = "1h"\n', r"at most 300s"),
    ('[webhooks."a.b"]\nurl = "http://x/"\nsecret_env = "S"\nconnect_timeout = "x"\n', r"connect_timeout"),
    ('[webhooks."a.b"]\nurl = "http://x/"\nsecret_env = "S"\nsecret = "x"\n', r"secret: unknown key"),
    ('[webhooks."bad type!"]\nurl = "http://x/"\nsecret_env = "S"\n', r'webhooks."bad type!"'),
    ('[webhooks]\n"a.b" = 3\n', r'webhooks."a.b" must be a table'),
    ("webhooks = 3\n", r"webhooks must be a table"),
])
def test_bad_endpoints_are_named(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint) as bad:
        load_config(cwd=write(tmp_path, text))
    assert "failure-aware.toml" in str(bad.value)


def endpoint() -> Endpoint:
    return Endpoint("payment.webhook", "http://127.0.0.1:1/", "PAY_SECRET")


@pytest.mark.parametrize("value", [SECRET, SECRET.removeprefix("whsec_"), f"  {SECRET}\n"])
def test_the_secret_is_read_from_the_named_variable(value: str) -> None:
    assert endpoint().read_keys({"PAY_SECRET": value}) == (RAW,)


def test_two_secrets_sign_with_both_while_rotating() -> None:
    other = os.urandom(32)
    both = f"{SECRET} whsec_{base64.b64encode(other).decode()}"
    assert endpoint().read_keys({"PAY_SECRET": both}) == (RAW, other)


@pytest.mark.parametrize(("environ", "complaint"), [
    ({}, "PAY_SECRET is not set"),
    ({"PAY_SECRET": "  "}, "PAY_SECRET is not set"),
    ({"PAY_SECRET": "whsec_%%%notbase64"}, "not valid base64"),
    ({"PAY_SECRET": "whsec_" + base64.b64encode(b"short").decode()}, "5 bytes"),
])
def test_a_missing_or_bad_secret_is_named_never_shown(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint) as bad:
        endpoint().read_keys(environ)
    for value in environ.values():
        if value.strip():
            assert value.strip().removeprefix("whsec_") not in str(bad.value)


def test_configure_reads_every_secret_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(cwd=write(tmp_path, GOOD))
    monkeypatch.setenv("PAY_SECRET", SECRET)
    monkeypatch.delenv("CRM_SECRET", raising=False)
    handler = WebhookHandler()
    with pytest.raises(ValidationError, match="CRM_SECRET is not set"):
        handler.configure(config)
    monkeypatch.setenv("CRM_SECRET", SECRET)
    handler.configure(config)
    assert SECRET not in repr(handler) and "crm.sync" in repr(handler)


def test_configure_refuses_a_config_without_endpoints(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no webhook endpoints configured .*\[webhooks"):
        WebhookHandler().configure(load_config(cwd=write(tmp_path, "[retry]\nmax_attempts = 2\n")))


def test_load_handler_configures_the_webhook_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAY_SECRET", raising=False)
    config = load_config(cwd=write(tmp_path, GOOD))
    with pytest.raises(ValidationError, match="PAY_SECRET is not set"):
        load_handler("failure_aware.webhooks:deliver", config)


def test_the_documented_webhook_example_loads(tmp_path: Path) -> None:
    text = (DOCS / "configuration.md").read_text()
    section = text[text.index("## Webhook endpoints"):]
    snippet = re.search(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    assert snippet is not None
    endpoints = load_config(cwd=write(tmp_path, snippet.group(1))).webhooks
    assert endpoints["payment.webhook"].timeout_seconds == 15
