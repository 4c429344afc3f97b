"""The dashboard over HTTP, in process, on both backends: sessions, CSRF, scopes, escaping, headers.

The browser walk (tests/process/test_dashboard_browser.py) checks the same things in Chromium; these check the
server's own refusals quickly and precisely (status codes, nothing written).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest
from server_support import history_counts, make_tokens

from failure_aware import Ledger
from failure_aware.server.app import create_app
from failure_aware.server.dashboard.session import COOKIE, SessionKey

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> javascript:alert(3)"
PAGES = ("/", "/events", "/dead", "/clusters", "/incidents", "/health", "/events?state=DEAD")


@pytest.fixture
def seeded(ledger: Ledger) -> Iterator[tuple[Ledger, dict[str, str], int]]:
    secrets = make_tokens(ledger)
    event = ledger.detect("pay.hook", {"html": HOSTILE}, key=HOSTILE)
    ledger.report(event.id, False, error_type="Boom", error=HOSTILE, permanent=True)
    ledger.annotate(event.id, HOSTILE, author="tests")
    yield ledger, secrets, event.id


def client(ledger: Ledger, secret: str | None = None) -> TestClient:
    app = create_app(ledger, session_key=SessionKey(b"k" * 32), token_cache_seconds=0)
    made = TestClient(app)
    if secret is not None:
        assert made.get(f"/login?token={secret}", follow_redirects=False).status_code == 303
    return made


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def test_pages_need_a_session_and_send_a_strict_csp(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, event_id = seeded
    anonymous = client(ledger)
    for path in (*PAGES, f"/events/{event_id}"):
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
    reader = client(ledger, secrets["read"])
    for path in (*PAGES, f"/events/{event_id}"):
        page = reader.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert page.headers["cache-control"] == "no-store"
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "<script>" not in re.sub(r'<script src="/static/[a-z.]+" defer></script>', "", page.text)


def test_hostile_text_is_escaped_on_the_event_page(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, event_id = seeded
    page = client(ledger, secrets["read"]).get(f"/events/{event_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'href="javascript:' not in page


def test_the_session_cookie_is_httponly_samesite_and_signed(seeded: tuple[Ledger, dict[str, str], int]
                                                           ) -> None:
    ledger, secrets, _ = seeded
    made = client(ledger)
    answer = made.get(f"/login?token={secrets['read']}", follow_redirects=False)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and secrets["read"].lower() not in cookie
    value = made.cookies[COOKIE]
    tampered = client(ledger)
    tampered.cookies.set(COOKIE, value[:-1] + ("0" if value[-1] != "0" else "1"))
    assert tampered.get("/", follow_redirects=False).status_code == 303
    assert client(ledger).get("/login?token=fa_wrong").status_code == 401


def test_a_login_form_without_its_csrf_token_is_refused(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, _ = seeded
    made = client(ledger)
    made.get("/login")
    refused = made.post("/login", data={"token": secrets["read"]})
    assert refused.status_code == 403 and COOKIE not in made.cookies
    # the refusal shows a fresh form (a new nonce): it signs in
    signed_in = made.post("/login", data={"token": secrets["read"], "csrf": csrf_of(refused.text)},
                          follow_redirects=False)
    assert signed_in.status_code == 303 and COOKIE in made.cookies


def test_actions_need_csrf_and_operate_and_write_nothing_otherwise(
    seeded: tuple[Ledger, dict[str, str], int]
) -> None:
    ledger, secrets, event_id = seeded
    before = history_counts(ledger)
    reader = client(ledger, secrets["read"])
    reader_page = reader.get(f"/events/{event_id}").text.split("<main>", 1)[1]  # the header's Log out aside
    assert 'name="csrf"' not in reader_page and "Revive" not in reader_page and "Add note" not in reader_page
    # a read session with its own valid CSRF token is still refused: the scope is checked on the server
    key = reader.app.state.session_key  # type: ignore[attr-defined]
    session = key.read(reader.cookies[COOKIE])
    forged = {"csrf": key.csrf(session), "text": "forged"}
    for path in (f"/events/{event_id}/note", f"/events/{event_id}/revive", f"/events/{event_id}/bury"):
        assert reader.post(path, data=forged).status_code == 403, path
    assert reader.post("/revive", data={**forged, "within": "all", "expected": "1"}).status_code == 403
    assert reader.get("/revive?within=all").status_code == 403
    operator = client(ledger, secrets["operate"])
    assert operator.post(f"/events/{event_id}/note", data={"text": "no csrf"}).status_code == 403
    assert operator.post(f"/events/{event_id}/note", data={"text": "x", "csrf": "0" * 64}).status_code == 403
    assert client(ledger).post(f"/events/{event_id}/revive", data={"csrf": "x"}).status_code == 403
    assert history_counts(ledger) == before


def test_operate_notes_revives_and_bulk_revives_with_a_dry_run(
    seeded: tuple[Ledger, dict[str, str], int]
) -> None:
    ledger, secrets, event_id = seeded
    others = []
    for n in range(3):
        made = ledger.detect("pay.hook", {}, key=f"other-{n}")
        ledger.report(made.id, False, error_type="Boom", error="card declined", permanent=True)
        others.append(made.id)
    operator = client(ledger, secrets["operate"])
    csrf = csrf_of(operator.get(f"/events/{event_id}").text)
    noted = operator.post(f"/events/{event_id}/note", data={"text": "looked at it", "csrf": csrf},
                          follow_redirects=False)
    assert noted.status_code == 303 and noted.headers["location"] == f"/events/{event_id}?done=note"
    assert ledger.show(event_id).annotations[-1].author == "operate-token"
    revived = operator.post(f"/events/{event_id}/revive", data={"csrf": csrf}, follow_redirects=False)
    assert revived.status_code == 303 and ledger.get(event_id).state == "PENDING"
    again = operator.post(f"/events/{event_id}/revive", data={"csrf": csrf})
    assert again.status_code == 409 and "PENDING" in again.text
    dry = operator.get("/revive?type=pay.hook&within=all")
    assert dry.status_code == 200 and re.search(r'id="dry-run-count">3<', dry.text), dry.text
    assert all(ledger.get(i).state == "DEAD" for i in others)  # a dry run writes nothing
    done = operator.post("/revive", data={"csrf": csrf, "type": "pay.hook", "within": "all", "expected": "3"})
    assert done.status_code == 200 and 'id="revived-count">3<' in done.text
    assert all(ledger.get(i).state == "PENDING" for i in others)
    transitions = ledger.show(others[0]).transitions
    assert transitions[-1].actor == "operate-token"


def test_bad_filters_and_unknown_ids_are_clear_pages(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, _ = seeded
    reader = client(ledger, secrets["read"])
    bad_time = reader.get("/events?since=yesterday")
    assert bad_time.status_code == 422 and "since" in bad_time.text
    assert reader.get("/events?state=NOPE").status_code == 422
    assert reader.get("/events/999999").status_code == 404
    assert reader.get("/events/abc").status_code == 404
    assert reader.get("/clusters/c_nope").status_code == 404
    assert reader.get("/incidents/i_nope").status_code == 404
    assert reader.get("/login?next=//evil.example", follow_redirects=False).status_code == 200
    signed = client(ledger).get(f"/login?token={secrets['read']}&next=//evil.example", follow_redirects=False)
    assert signed.headers["location"] == "/"


def test_a_revoked_token_ends_its_sessions(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, _ = seeded
    reader = client(ledger, secrets["read"])
    assert reader.get("/", follow_redirects=False).status_code == 200
    ledger.revoke_token("read-token")
    assert reader.get("/", follow_redirects=False).status_code == 303


def test_a_short_session_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from failure_aware.domain.errors import ValidationError

    monkeypatch.setenv("FAILURE_AWARE_SESSION_KEY", "short")
    with pytest.raises(ValidationError, match="too short"):
        SessionKey.from_environment()
    monkeypatch.setenv("FAILURE_AWARE_SESSION_KEY", "x" * 40)
    first, second = SessionKey.from_environment(), SessionKey.from_environment()
    cookie, _ = first.issue("a", login_token=False)
    assert second.read(cookie) is not None  # two processes with one key accept each other's cookies


def test_dead_letters_group_by_last_fingerprint_and_bulk_revive_filters_by_it(ledger: Ledger) -> None:
    from failure_aware.domain.timeutil import EPOCH

    def dead(kind: str, error: str) -> int:
        made = ledger.detect(kind, {})
        ledger.report(made.id, False, error_type="Boom", error=error, permanent=True)
        return made.id

    declined = [dead("pay.hook", f"card 41{n} declined") for n in range(3)]
    timeouts = [dead("pay.hook", "gateway timed out") for _ in range(2)]
    dead("mail.send", "relay refused")
    kinds = ledger.dead_letters()
    assert [(k.event_type, k.dead, k.sampled) for k in kinds] == [("pay.hook", 5, 5), ("mail.send", 1, 1)]
    groups = kinds[0].groups
    assert [(g.count, g.newest_event_id) for g in groups] == [(3, declined[-1]), (2, timeouts[-1])]
    assert groups[0].fingerprint == ledger.show(declined[0]).attempts[-1].fingerprint
    assert groups[0].example_error == "card 412 declined"
    sampled = ledger.dead_letters(sample=2, event_type="pay.hook")
    assert [(k.dead, k.sampled) for k in sampled] == [(5, 2)]
    fingerprint = groups[0].fingerprint
    assert fingerprint is not None
    ids = ledger.revive_dead(since=EPOCH, event_type="pay.hook", fingerprint=fingerprint, dry_run=True)
    assert ids == declined
    assert ledger.revive_dead(since=EPOCH, fingerprint=fingerprint, limit=2) == declined[:2]
    assert ledger.get(declined[2]).state == "DEAD" and ledger.get(timeouts[0]).state == "DEAD"


def test_event_lists_agree_whether_sqlite_walks_ids_or_uses_an_index(ledger: Ledger) -> None:
    """Filters matching 1 in 50 or more walk ids on SQLite, rarer ones use an index: the same answers."""
    from failure_aware.events.queries import DENSE_SHARE

    common = [ledger.detect("a.type", {}).id for _ in range(DENSE_SHARE + 10)]
    rare = ledger.detect("b.type", {})
    ledger.report(rare.id, False, error_type="Boom", error="x", permanent=True)
    newest = ledger.detect("a.type", {}).id
    every = [*common, newest]
    assert [e.id for e in ledger.events(state="PENDING", limit=500)] == sorted(every, reverse=True)
    assert [e.id for e in ledger.events(state="DEAD")] == [rare.id]  # rare: the index
    assert [e.id for e in ledger.events(state="DEAD", event_type="b.type")] == [rare.id]
    assert ledger.events(state="DEAD", event_type="a.type") == []
    page = ledger.events(event_type="a.type", limit=5, before_id=newest)
    assert [e.id for e in page] == sorted(common, reverse=True)[:5]
    assert [e.id for e in ledger.events(state="PENDING", event_type="a.type", limit=3)] == [
        newest, common[-1], common[-2]]


def test_the_one_off_login_link_of_serve_opens_an_admin_session(ledger: Ledger) -> None:
    from failure_aware.server.auth import LoginToken

    login, secret = LoginToken.make()
    made = TestClient(create_app(ledger, login=login, session_key=SessionKey(b"k" * 32)))
    answer = made.get(f"/login?token={secret}&next=/dead", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/dead"
    page = made.get("/dead")
    assert page.status_code == 200 and "serve-login" in page.text and "admin" in page.text
    # another process (another login token, the same key) does not accept this session
    other, _ = LoginToken.make()
    elsewhere = TestClient(create_app(ledger, login=other, session_key=SessionKey(b"k" * 32)))
    elsewhere.cookies.set(COOKIE, made.cookies[COOKIE])
    assert elsewhere.get("/", follow_redirects=False).status_code == 303


def test_logout_is_a_post_with_the_session_csrf_token(seeded: tuple[Ledger, dict[str, str], int]) -> None:
    ledger, secrets, _ = seeded
    reader = client(ledger, secrets["read"])
    page = reader.get("/").text
    assert reader.get("/logout", follow_redirects=False).status_code == 405  # a link cannot sign out
    refused = reader.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    assert reader.get("/", follow_redirects=False).status_code == 200  # still signed in
    done = reader.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert reader.get("/", follow_redirects=False).status_code == 303  # the session ended
