"""The page's deliveries section in a real headless browser (Debian's chromium driven by
Playwright) against the API served by uvicorn: an admin sees each destination and the dead
letters and retries or drops one; a reader never sees the section."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from common import Priority
from common.delivery import Content, DeliveryStatus
from db import deliveries
from db.audit import AuditAction, entries_since
from db.deliveries import Route
from db.models import Delivery, utcnow
from radtriage import health, metrics
from radtriage.api import create_api
from tests.api_support import add_study, user
from tests.conftest import need
from tests.integration.delivery_rows import delivery

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def served(sqlite_sessions):
    """The API and page on a free port, in this process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_api(sessions=sqlite_sessions, health=lambda: health.report({}), metrics=metrics.render)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_an_admin_retries_and_drops_dead_letters_on_the_page(served, sqlite_sessions):
    need(CHROMIUM.is_file(), f"chromium at {CHROMIUM}")
    now = utcnow()
    uid = add_study(sqlite_sessions, 1, Priority.ROUTINE, received=now, ai=Priority.STAT, accession="<b>ACC1")
    delivery(sqlite_sessions, uid, "ris", DeliveryStatus.PENDING, created=now - dt.timedelta(minutes=7), attempts=2,
             attempted=now, error="OMI^O23: ACK AE")
    retried = delivery(sqlite_sessions, uid, "ris", DeliveryStatus.DEAD, created=now, content=Content.RESULT,
                       attempts=5, attempted=now - dt.timedelta(minutes=1), error="ORU^R01: ACK AR", closed=now)
    dropped = delivery(sqlite_sessions, uid, "hook", DeliveryStatus.DEAD, created=now, attempts=1,
                       error="POST webhook: HTTP 401", closed=now)
    with sqlite_sessions() as session:
        deliveries.sync_destinations(session, [Route("ris", "hl7v2", frozenset({Content.PRIORITY, Content.RESULT}))])
    admin = user(sqlite_sessions, "ada", "admin")["Authorization"].removeprefix("Bearer ")
    reader = user(sqlite_sessions, "rex")["Authorization"].removeprefix("Bearer ")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = sign_in(browser, served, admin)
            expect(page.locator("#deliveries")).to_be_visible()
            ris = page.locator("#destinations tr", has_text="ris")
            expect(ris).to_contain_text("ris (hl7v2)")
            expect(ris).to_contain_text("failing")
            expect(ris).to_contain_text("OMI^O23: ACK AE")
            expect(ris).to_contain_text("7 min")  # the oldest waiting delivery's age
            letters = page.locator("#dead-letters tr")
            expect(letters).to_have_count(2)
            expect(letters.filter(has_text="<b>ACC1").first).to_be_visible()  # markup in data stays text

            letters.filter(has_text="ORU^R01").get_by_role("button", name="Retry").click()
            expect(letters).to_have_count(1)
            page.once("dialog", lambda dialog: dialog.accept())  # "Drop delivery …? It will never be sent."
            letters.filter(has_text="HTTP 401").get_by_role("button", name="Drop").click()
            expect(letters).to_have_count(0)
            expect(page.locator("#deliveries-error")).to_have_text("")

            other = sign_in(browser, served, reader)
            expect(other.locator("#deliveries")).to_be_hidden()
            expect(other.locator("#deliveries-error")).to_have_text("")  # it never asked (a 403 would show)
        finally:
            browser.close()

    with sqlite_sessions() as session:
        status = dict(session.execute(select(Delivery.id, Delivery.status)).all())
        audit = entries_since(session, since=now - dt.timedelta(minutes=1))
    assert (status[retried], status[dropped]) == ("pending", "dropped")
    assert [(a.user, a.action) for a in audit] == [("ada", AuditAction.DELIVERY_RETRY),
                                                   ("ada", AuditAction.DELIVERY_DROP)]


def sign_in(browser, base: str, token: str):
    page = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="dark").new_page()
    page.goto(f"{base}/")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#rows tr")  # signed in and the worklist loaded
    return page
