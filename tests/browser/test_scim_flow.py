"""The SCIM page in a real browser, the seed's flow end to end: Enable SCIM (Okta, 90
days), copy the URL, Reveal token (a wrong passphrase first), then Refresh Token →
Passphrase → Refresh Token; outside the browser, the old token keeps working for the
grace period and not after it."""

from __future__ import annotations

import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from blueprints.scim_settings import connector as service
from models import utcnow
from tests import factories
from tests.scim_settings.conftest import ready  # noqa: F401  (verified domain + SSO on)

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "scim.png"  # /tmp/scim.png, to look at
TOKEN = re.compile(r"scim_[A-Za-z0-9_-]{43}")


def sign_in(page: Page, user) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation").get_by_role("link", name="SCIM")).to_be_visible()


def confirm(page: Page, button: str, passphrase: str) -> None:
    """The passphrase form that a token button swapped into the token panel."""
    panel = page.locator(".token-panel")  # the one token's (SCIM just enabled: "Default")
    field = panel.get_by_label("Passphrase")
    expect(field).to_be_focused()
    field.fill(passphrase)
    panel.get_by_role("button", name=button).click()


def _reason(session, token: str, now) -> str | None:
    session.expire_all()
    connector = service.get_connector(session, session.info["account_id"])
    return service.authenticate(session, connector.public_id, f"Bearer {token}", now).reason


def test_owner_enables_scim_reveals_and_refreshes_token_in_place(page, session, ready, owner):  # noqa: F811
    session.info["account_id"] = ready.id
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    page.get_by_role("navigation").get_by_role("link", name="SCIM").click()
    expect(page.get_by_role("heading", name="SCIM provisioning")).to_be_visible()
    assert page.evaluate("typeof window.htmx") == "object"  # the local copy, CDN blocked
    page.evaluate("window.__marker = 1")  # a full page load would wipe it out

    # Enable SCIM: Okta, 90 days.
    page.get_by_label("Identity provider").select_option(label="Okta")
    page.get_by_label("Token lifetime").select_option(label="90 days")
    page.get_by_role("button", name="Enable SCIM").click()

    url = page.locator("#scim-url")
    expect(url).to_have_text(re.compile(r"^http://localhost/scim/v2/[\w-]{22}$"))
    first = page.locator("#scim-token").inner_text()
    assert TOKEN.fullmatch(first)
    expect(page.locator(".token-state")).to_have_text("Valid")
    expect(page.locator("#idp-steps")).to_contain_text("Configure Okta")
    expect(page.locator("#idp-steps code", has_text=url.inner_text())).to_be_visible()
    expect(page.locator("#request-log")).to_have_attribute("hx-trigger", "every 10s")
    expect(page.locator("#request-log")).to_have_count(1)

    # Copy the connector URL.
    copy = url.locator("xpath=..").locator("button.copy")  # its name changes when clicked
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url.inner_text()

    # Reveal token: a wrong passphrase first, then the right one.
    page.get_by_role("button", name="Hide token").click()
    expect(page.locator("#scim-token")).to_have_count(0)
    page.get_by_role("button", name="Reveal token").click()
    confirm(page, "Reveal token", "not my passphrase at all")
    expect(page.locator("#passphrase-error")).to_have_text("That passphrase is incorrect.")
    expect(page.locator("#scim-token")).to_have_count(0)
    confirm(page, "Reveal token", factories.PASSPHRASE)
    expect(page.locator("#scim-token")).to_have_text(first)

    # Refresh Token → Passphrase → Refresh Token (a wrong passphrase keeps the panel whole),
    # straight from the revealed token: one found leaked is refreshed without hiding it.
    expect(page.get_by_role("button", name="Hide token")).to_be_visible()
    page.get_by_role("button", name="Refresh Token").click()
    confirm(page, "Refresh Token", "not my passphrase at all")
    expect(page.locator("#passphrase-error")).to_have_text("That passphrase is incorrect.")
    expect(page.locator("#scim-url")).to_be_visible()
    confirm(page, "Refresh Token", factories.PASSPHRASE)

    expect(page.locator(".grace-note")).to_contain_text("The previous token keeps working until")
    second = page.locator("#scim-token").inner_text()
    assert TOKEN.fullmatch(second) and second != first
    expect(page.locator("#scim-url")).to_have_text(url.inner_text())
    expect(page.locator("#connector")).to_contain_text(f"by {owner.email}")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert page.url.endswith("/enterprise/scim")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Outside the browser: the old token works through the grace period, not after it.
    now = utcnow()
    assert _reason(session, first, now) is None
    assert _reason(session, second, now) is None
    assert _reason(session, first, now + timedelta(hours=25)) == "unknown"
    assert _reason(session, second, now + timedelta(hours=25)) is None
