"""/docs works offline and as the signed-in user: a real headless chromium (Debian's) that may
reach nothing but the server renders every operation of the schema, fetched with the token the
worklist page keeps in the tab; the schema itself needs a user once users exist."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from radtriage import health, metrics
from radtriage.api import create_api
from radtriage.auth import Authenticator
from tests.api_support import user
from tests.conftest import need
from tests.e2e.daemon import free_port

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def server(sqlite_sessions):
    app = create_api(sessions=sqlite_sessions, health=lambda: health.report({}), metrics=metrics.render,
                     auth=Authenticator(sqlite_sessions))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}", app
    server.should_exit = True
    thread.join(10)


def test_docs_page_loads_only_local_assets_and_the_schema_needs_a_user(server, sqlite_sessions):
    import httpx

    base, _app = server
    page = httpx.get(f"{base}/docs")
    assert page.status_code == 200
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(link.startswith("/") for link in linked), f"not served here: {linked}"
    for link in linked:
        assert httpx.get(f"{base}{link}").status_code == 200, link
    assert httpx.get(f"{base}/openapi.json").status_code == 200, "no user yet: the API is open, so is its schema"
    headers = user(sqlite_sessions, "docs-reader")
    assert httpx.get(f"{base}/openapi.json").status_code == 401
    assert httpx.get(f"{base}/openapi.json", headers=headers).status_code == 200
    assert httpx.get(f"{base}/docs/assets/..%2Fapp.js").status_code == 404


def test_docs_render_offline_in_a_browser_signed_in_as_the_page(server, sqlite_sessions):
    need(CHROMIUM.is_file(), f"chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    base, app = server
    token = user(sqlite_sessions, "docs-reader")["Authorization"].removeprefix("Bearer ")
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    elsewhere, schema_auth = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context().new_page()

            def only_the_server(route):
                if route.request.url.startswith(base):
                    if route.request.url.endswith("/openapi.json"):
                        schema_auth.append(route.request.headers.get("authorization"))
                    route.continue_()
                else:  # a CDN, fonts, anything: the hospital network has none of it
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_server)
            page.goto(f"{base}/")  # the worklist page's tab: sign in as it does
            page.evaluate("token => sessionStorage.setItem('radtriage.token', token)", token)
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            assert page.locator(".opblock").count() == operations
            assert "radtriage" in page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert not [url for url in elsewhere if not url.startswith("data:")], elsewhere
    assert schema_auth == [f"Bearer {token}"]
