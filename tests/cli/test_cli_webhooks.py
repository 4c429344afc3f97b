"""``failure-aware deliver`` and the webhook handler through the CLI (``run``, ``retry --due``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import dump, run_main
from webhook_support import SECRET, SECRET_ENV, respond

from failure_aware import Ledger, State
from failure_aware.config import Config
from failure_aware.webhooks.receiver import LocalReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[LocalReceiver]:
    with LocalReceiver(SECRET, respond) as started:
        yield started


@pytest.fixture
def setup(tmp_path: Path, receiver: LocalReceiver, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A SQLite database and a config whose endpoints are paths of the receiver; the secret in the env."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = tmp_path / "failure-aware.toml"
    lines = []
    for event_type, path in (("hook.ok", "/status/200"), ("hook.busy", "/status/503?retry_after=120")):
        lines += [f'[webhooks."{event_type}"]', f'url = "{receiver.url(path)}"',
                  f'secret_env = "{SECRET_ENV}"', 'timeout = "2s"', ""]
    config.write_text("\n".join(lines))
    return f"sqlite:///{tmp_path / 'fa.db'}", str(config)


def detect(db: str, event_type: str, key: str = "k1") -> int:
    with Ledger(db, config=Config()) as ledger:
        return ledger.detect(event_type, {"amount": 3}, key=key).id


def state_of(db: str, event_id: int) -> State:
    with Ledger(db, config=Config(), readonly=True) as ledger:
        return ledger.get(event_id).state


def test_deliver_prints_the_answer_and_records_the_attempt(
    setup: tuple[str, str], receiver: LocalReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = setup
    event_id = detect(db, "hook.ok")
    done = run_main(capsys, "--db", db, "--config", config, "deliver", str(event_id))
    assert done.code == 0, done.err
    assert "attempt 1 succeeded -> SUCCEEDED" in done.out and "answered 200" in done.out
    assert "answer 200" in done.out  # the body's head
    assert state_of(db, event_id) is State.SUCCEEDED
    assert SECRET not in done.out + done.err


def test_deliver_json_shows_a_failure_with_its_detail(
    setup: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = setup
    event_id = detect(db, "hook.busy")
    done = run_main(capsys, "--db", db, "--config", config, "deliver", str(event_id), "--json")
    assert done.code == 0, done.err
    got = json.loads(done.out)
    assert got["state"] == "FAILED"
    detail = got["attempt"]["detail"]
    assert detail["status"] == 503 and detail["retry_after"] == "120"
    assert got["attempt"]["error_type"] == "HTTP503"
    assert state_of(db, event_id) is State.FAILED


def test_dry_run_shows_the_signed_request_and_sends_and_writes_nothing(
    setup: tuple[str, str], receiver: LocalReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = setup
    event_id = detect(db, "hook.ok")
    before, received = dump(db), receiver.count
    done = run_main(capsys, "--db", db, "--config", config, "deliver", str(event_id), "--dry-run", "--json")
    assert done.code == 0, done.err
    got = json.loads(done.out)
    assert got["headers"]["webhook-signature"].startswith("v1,") and got["body"] == '{"amount":3}'
    assert dump(db) == before and receiver.count == received


@pytest.mark.parametrize(("env", "complaint"), [
    ({SECRET_ENV: ""}, f"{SECRET_ENV} is not set"),
    ({SECRET_ENV: "whsec_???"}, "not valid base64"),
])
def test_a_missing_secret_stops_before_anything_is_claimed(
    setup: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], complaint: str,
) -> None:
    db, config = setup
    event_id = detect(db, "hook.ok")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = dump(db)
    handler = ["--handler", "failure_aware.webhooks:deliver"]
    for argv in (["deliver", str(event_id)], ["run", str(event_id), *handler], ["retry", "--due", *handler]):
        done = run_main(capsys, "--db", db, "--config", config, *argv)
        assert done.code == 1 and complaint in done.err, (argv, done.err)
        assert "Traceback" not in done.err
    assert dump(db) == before


def test_an_event_type_without_endpoint_is_refused_by_deliver(
    setup: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = setup
    event_id = detect(db, "hook.unknown")
    before = dump(db)
    done = run_main(capsys, "--db", db, "--config", config, "deliver", str(event_id))
    assert done.code == 1 and 'no [webhooks."hook.unknown"] endpoint' in done.err
    assert dump(db) == before


def test_no_webhooks_configured_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'fa.db'}"
    event_id = detect(db, "hook.ok")
    (tmp_path / "empty.toml").write_text("")
    done = run_main(capsys, "--db", db, "--config", str(tmp_path / "empty.toml"), "deliver", str(event_id))
    assert done.code == 1 and "no webhook endpoints configured" in done.err


def test_retry_due_with_the_webhook_handler(setup: tuple[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db, config = setup
    ok = [detect(db, "hook.ok", key=f"ok{n}") for n in range(3)]
    busy = detect(db, "hook.busy")
    done = run_main(capsys, "--db", db, "--config", config, "retry", "--due", "--handler",
                    "failure_aware.webhooks:deliver", "--json")
    assert done.code == 0, done.err
    lines = [json.loads(line) for line in done.out.splitlines()]
    assert lines[-1]["succeeded"] == 3 and lines[-1]["failed"] == 1
    assert all(state_of(db, e) is State.SUCCEEDED for e in ok) and state_of(db, busy) is State.FAILED
