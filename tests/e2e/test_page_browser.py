"""The worklist page in a real headless browser (Debian's chromium driven by Playwright, nothing
downloaded) against ``radtriage serve``: sign in, reading order, a DICOM push appearing without a
reload, claim and mark read by keyboard, a second user seeing the claim. Screenshots are kept
under ``RADTRIAGE_TEST_ARTIFACTS`` (default: the test's folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import need
from tests.e2e.daemon import Daemon
from tests.factories import radiograph, write

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    need(CHROMIUM.is_file(), f"chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS") or tmp_path) / "page"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_user(daemon: Daemon, name: str, role: str) -> str:
    done = subprocess.run([sys.executable, "-m", "radtriage", "users", "add", name, "--role", role],
                          env=daemon.env, cwd=daemon.folder, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def api(daemon: Daemon, token: str, path: str):
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.http_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def push(daemon: Daemon, folder: Path, seed: int, priority: str | None) -> str:
    ds = radiograph(seed=seed, priority=priority, size=128)
    ds.AccessionNumber = f"<b>ACC{seed}"  # markup in the data must show as text
    daemon.storescu(write(ds, folder))
    return str(ds.StudyInstanceUID)


def sign_in(browser, daemon: Daemon, token: str):
    page = browser.new_context(viewport={"width": 1400, "height": 800}, color_scheme="dark").new_page()
    page.goto(f"http://127.0.0.1:{daemon.http_port}/")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#rows tr")
    return page


def reader_of(page, uid: str):
    return page.locator(f'#rows tr[data-uid="{uid}"] .reader')


def rows(page) -> list[dict]:
    return page.eval_on_selector_all("#rows tr", """rows => rows.map(r => ({
        uid: r.dataset.uid, priority: r.querySelector('.prio .badge').textContent,
        accession: r.querySelector('.acc').textContent, reader: r.querySelector('.reader').textContent}))""")


def test_reading_room_flow_in_a_real_browser(tmp_path, browser, artifacts, dcmtk):
    need(shutil.which("storescu") is not None, "DCMTK storescu")
    folder = tmp_path / "push"
    with Daemon(tmp_path / "daemon") as daemon:
        alice, bob = add_user(daemon, "alice", "reader"), add_user(daemon, "bob", "reader")
        routine = push(daemon, folder, 1, None)
        stat = push(daemon, folder, 2, "STAT")
        daemon.wait_for(lambda: len(api(daemon, alice, "/api/worklist")["items"]) == 2, 60, "two studies listed")

        page = sign_in(browser, daemon, alice)
        expect(page.locator("#rows tr")).to_have_count(2)
        shown = rows(page)
        assert [r["uid"] for r in shown] == [stat, routine]  # reading order: STAT first
        assert shown[0]["priority"].endswith("STAT") and shown[0]["accession"] == "<b>ACC2"  # text, not markup
        assert page.text_content("#user-name") == "alice"
        page.screenshot(path=artifacts / "1-signed-in.png", full_page=True)

        # A study pushed over DICOM appears live: the page is not reloaded (its marker survives).
        page.evaluate("window.__notReloaded = true")
        urgent = push(daemon, folder, 3, "MEDIUM")
        expect(page.locator("#rows tr")).to_have_count(3, timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True
        assert [r["uid"] for r in rows(page)] == [stat, urgent, routine]

        # Keyboard: j moves down, c claims the selected study; bob sees it as alice's, live.
        other = sign_in(browser, daemon, bob)
        page.keyboard.press("j")
        page.keyboard.press("c")
        expect(reader_of(page, urgent)).to_have_text("you")
        expect(reader_of(other, urgent)).to_have_text("alice", timeout=15_000)
        assert other.is_disabled(f'#rows tr[data-uid="{urgent}"] button[data-action="claim"]')
        page.keyboard.press("Enter")  # detail with the patient header, for a signed-in user
        page.wait_for_selector("#detail:not([hidden]) dl")
        assert "TEST PATIENT" in page.text_content("#detail")
        expect(page.locator("#detail img")).to_have_attribute("src", re.compile("^blob:"))
        page.wait_for_timeout(300)  # let the preview paint before the screenshot
        page.screenshot(path=artifacts / "2-claimed-detail.png", full_page=True)
        other.screenshot(path=artifacts / "3-second-user-sees-claim.png", full_page=True)

        # m marks it read: it leaves both worklists.
        page.keyboard.press("Escape")
        page.keyboard.press("m")
        expect(page.locator("#rows tr")).to_have_count(2)
        expect(other.locator("#rows tr")).to_have_count(2, timeout=15_000)
        assert urgent not in [r["uid"] for r in rows(other)]
        page.screenshot(path=artifacts / "4-after-read.png", full_page=True)

    # The patient's name and ID were shown to a signed-in user, and reached no log line of the
    # whole run (daemon, listener processes, workers all write to this log).
    log = daemon.log()
    assert all(phi not in log for phi in ("TEST^PATIENT", "TEST PATIENT", "TEST-0001"))
