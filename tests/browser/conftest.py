"""Browser tests: Debian's Chromium driven by Playwright, against the app served on a free
loopback port. The CDN is blocked so the pages run on the local htmx copy, as offline.

The server (`live_server`, tests/conftest.py) opens its own database sessions, so
everything a test sets up must be committed (the factories commit). DNS questions go to
the test DNS server of `tests/domains` (its fixtures are imported here).
"""

from __future__ import annotations

import shutil

import pytest

from tests.domains.conftest import config_overrides, dns, dns_server  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(5000)
    tab = context.new_page()
    tab.route("**/unpkg.com/**", lambda route: route.abort())
    yield tab
    context.close()
