"""The dashboard in headless Chromium against a real ``failure-aware serve``, on both backends.

One walk per backend: log in with the login link, visit every page (no console error: the CSP holds
with htmx), filter events, add a note, revive one event, bury one, bulk-revive with the dry-run count;
the overview refreshes itself while visible and not while hidden (Playwright's fake clock);
hostile text (``<script>``, ``<img onerror>``, ``javascript:``) shows as text and runs nothing; a ``read``
token finds no action control and its forged POSTs are refused. With ``FAILURE_AWARE_SCREENSHOTS=1`` the
SQLite walk saves the pictures of docs/dashboard.md into docs/images/.

Chromium is the system's (``/usr/bin/chromium``, Debian's ``chromium`` package), driven by Playwright;
a missing browser skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI
from server_support import history_counts, make_tokens, start_server

from failure_aware import Ledger
from failure_aware.config import Config

pytestmark = pytest.mark.slow  # a server process and a browser per test

CHROMIUM = os.environ.get("FAILURE_AWARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = ("<script>window.__pwned=1;alert(1)</script> <img src=x onerror=\"window.__pwned=2\"> "
           "javascript:alert(3)")
TIMEOUT_MS = 15_000


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent
    while not (here / "pyproject.toml").exists() and here != here.parent:
        here = here.parent
    return here


SHOTS = _repo_root() / "docs" / "images" if os.environ.get("FAILURE_AWARE_SCREENSHOTS") == "1" else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = ""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        problem = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "the playwright package is missing (pip install -e '.[test]')"
    if problem:
        if IN_CI:
            pytest.fail(problem + " (CI=true: the browser tests must run)")
        pytest.skip(problem)
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def seed(url: str) -> dict[str, Any]:
    """Tokens, a hostile event, three dead letters of one fingerprint, a FAILED one, a success, clusters."""
    with Ledger(url, config=Config()) as ledger:
        secrets = make_tokens(ledger)
        hostile = ledger.detect("pay.hook", {"html": HOSTILE}, key=HOSTILE)
        ledger.report(hostile.id, False, error_type="Boom", error=HOSTILE, permanent=True)
        ledger.annotate(hostile.id, HOSTILE, author="tests")
        dead = []
        for n in range(3):
            event = ledger.detect("mail.send", {"n": n}, key=f"mail-{n}")
            ledger.report(event.id, False, error_type="SMTPError", error=f"relay refused message {n}",
                          permanent=True)
            dead.append(event.id)
        failed = ledger.detect("mail.send", {"n": 9}, key="mail-failed")
        ledger.report(failed.id, False, error_type="Timeout", error="slow relay")
        ok = ledger.detect("pay.hook", {"n": 1}, key="paid")
        ledger.report(ok.id, True)
        background(ledger)
        ledger.correlate(min_failures=2, min_events=2, rebuild=True)
        return {"secrets": secrets, "hostile": hostile.id, "dead": dead, "failed": failed.id}


def background(ledger: Ledger) -> None:
    """Other types' work over the last 20 hours (two bursts of failures): the overview's picture."""
    now = datetime.now(UTC)
    for n in range(40):
        burst = n in (10, 11, 12, 13, 30, 31, 32, 33)
        slot = n - n % 10 if burst else n  # a burst's events arrive within minutes of each other
        at = now - timedelta(hours=20) + timedelta(minutes=30 * slot + (n % 10 if burst else 0))
        kind = ("crm.sync", "webhook.deliver")[n % 2]
        event = ledger.detect(kind, {"n": n}, key=f"bg-{n}", at=at)
        if burst or n % 7 == 0:
            for k, minutes in enumerate((0, 1, 2) if burst else (0,)):
                ledger.report(event.id, False, error_type="ConnectError", error=f"upstream {kind} refused",
                              at=at + timedelta(minutes=minutes, seconds=k), force=True)
        else:
            ledger.report(event.id, True, at=at + timedelta(seconds=1))


def shot(page: Any, name: str, backend: str) -> None:
    if SHOTS is not None and backend == "sqlite":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def watch(page: Any) -> list[str]:
    """Collect what must never happen on a page: console errors (a CSP violation is one) and dialogs."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    return problems


def operator_walk(browser: Any, base: str, data: dict[str, Any], backend: str) -> None:
    """Log in as ``operate``, visit every page, filter, note, revive, bury, bulk-revive."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = watch(page)

    # log in with the link `serve` prints; the secret leaves the address bar
    page.goto(f"{base}/login?token={data['secrets']['operate']}&next=/")
    assert page.url == f"{base}/"
    assert page.locator(".verdict").first.inner_text() in ("OK", "DEGRADED", "CRITICAL")
    assert page.locator("svg.chart rect.chart-bar").count() > 0
    shot(page, "overview", backend)
    for label in ("Events", "Dead letters", "Clusters", "Incidents", "Health"):
        page.locator("header nav").get_by_role("link", name=label, exact=True).click()
        assert page.get_by_role("heading", level=1).inner_text().startswith(label)
        shot(page, label.lower().replace(" ", "-"), backend)

    # filter: the form works with htmx (URL kept, bookmarkable) and lists only DEAD mail.send events
    page.goto(f"{base}/events")
    page.select_option("select[name=state]", "DEAD")
    page.fill("input[name=type]", "mail.send")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/events?*state=DEAD*")
    page.locator("#results").get_by_text("3 events match.").wait_for()
    listed = page.locator("table.events tbody tr td:first-child a").all_inner_texts()
    assert {int(t.strip("#")) for t in listed} == set(data["dead"])

    # the hostile event: shown as text, nothing runs
    page.goto(f"{base}/events/{data['hostile']}")
    shot(page, "event", backend)
    assert page.get_by_text("<script>window.__pwned=1;alert(1)</script>", exact=False).count() >= 3
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.evaluate("window.__pwned") is None

    # note, then revive the hostile (DEAD) event, then bury the FAILED one
    page.fill("textarea[name=text]", "checked the relay <b>by hand</b>")
    page.get_by_role("button", name="Add note").click()
    page.get_by_text("Note added.").wait_for()
    assert page.get_by_text("checked the relay <b>by hand</b>").count() == 1
    page.get_by_role("button", name="Revive").click()
    page.get_by_text("Revived: the event is PENDING again.").wait_for()
    page.goto(f"{base}/events/{data['failed']}")
    page.get_by_role("button", name="Bury (stop retrying)").click()
    page.get_by_text("Buried: the event is DEAD.").wait_for()

    # bulk revive from the dead letters: the dry run counts, the confirmation revives that many
    page.goto(f"{base}/dead")
    section = page.locator("section.dead-type", has_text="mail.send")
    section.get_by_role("link", name="Revive all…").click()
    assert page.locator("#dry-run-count").inner_text() == "4"  # three dead letters and the buried one
    shot(page, "bulk-revive", backend)
    page.get_by_role("button", name="Confirm: revive 4 events").click()
    assert page.locator("#revived-count").inner_text() == "4"
    # the operator's own session, but a form without its CSRF token (what another site could send)
    forged = page.request.post(f"{base}/events/{data['hostile']}/note", form={"text": "no csrf"})
    assert forged.status == 403 and "CSRF" in forged.text()
    assert problems == [], problems
    context.close()


def reader_walk(browser: Any, base: str, data: dict[str, Any]) -> None:
    """A ``read`` token: no action control anywhere, and its forged POSTs are refused."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{base}/login?token={data['secrets']['read']}")
    dead = data["dead"][0]
    for path in ("/", "/events", "/dead", f"/events/{data['hostile']}", f"/events/{dead}"):
        page.goto(base + path)
        assert page.locator("main form[method=post]").count() == 0, path
        assert page.locator("main a.button").count() == 0, path
        assert page.locator("main input[name=csrf]").count() == 0, path
    for path in (f"/events/{dead}/note", f"/events/{dead}/bury", f"/events/{dead}/revive", "/revive"):
        answer = page.request.post(base + path, form={"text": "forged", "within": "all", "expected": "1"})
        assert answer.status == 403, (path, answer.status)
    assert problems == [], problems
    context.close()


HIDEABLE = ("Object.defineProperty(document, 'visibilityState', {configurable: true, "
            "get: () => window.__faHidden ? 'hidden' : 'visible'});")


def polling_check(browser: Any, base: str, secret: str) -> None:
    """The overview refreshes itself (an htmx request) while visible, and not at all while hidden."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.add_init_script(HIDEABLE)  # lets the test hide the tab (headless tabs are always visible)
    page.clock.install()
    page.goto(f"{base}/login?token={secret}")
    page.locator(".verdict").first.wait_for()
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.headers.get("hx-request") == "true" else None)
    with page.expect_request(lambda r: r.headers.get("hx-request") == "true"):
        page.clock.run_for(16_000)
    page.wait_for_load_state("networkidle")
    page.locator("#live .verdict").first.wait_for()  # the refreshed part is in place
    seen = len(polls)
    assert seen == 1, polls
    page.evaluate("window.__faHidden = true")
    page.clock.run_for(120_000)  # eight intervals while hidden
    page.wait_for_timeout(500)
    assert len(polls) == seen, polls
    context.close()


def test_dashboard_walk_in_chromium(browser: Any, db_url: str, backend: str, tmp_path: Path) -> None:
    data = seed(db_url)
    server = start_server(db_url, tmp_path)
    try:
        operator_walk(browser, server.base, data, backend)
        with Ledger(db_url, config=Config()) as ledger:
            before = history_counts(ledger)
        reader_walk(browser, server.base, data)
        if backend == "sqlite":  # the browser's behaviour, not the database's
            polling_check(browser, server.base, data["secrets"]["read"])
        with Ledger(db_url, config=Config()) as ledger:
            assert history_counts(ledger) == before  # the reader's POSTs wrote nothing
            assert ledger.get(data["failed"]).state == "PENDING"  # buried, then bulk-revived
            assert ledger.show(data["hostile"]).annotations[-1].author == "operate-token"
            assert ledger.verify().ok
    finally:
        server.stop()
