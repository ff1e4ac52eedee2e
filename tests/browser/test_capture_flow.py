"""Domain capture in a real browser (SPEC F13): the owner turns capture on for a verified
domain (the passphrase step swaps the row in place), then in a second browser context a
new person of that domain signs up and opens the confirmation link from the outbox; the
owner's Members page shows them holding a seat."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Domain, OutboxEmail
from tests import factories
from tests.browser.conftest import config_overrides, dns, dns_server  # noqa: F401
from tests.browser.test_members_flow import open_members, sign_in

pytestmark = pytest.mark.browser

LINK = re.compile(r"https?://[^/\s]+(/signup/confirm/[A-Za-z0-9_-]+)")
NEW = "a passphrase of my own choosing"


def test_owner_turns_capture_on_and_a_new_person_joins_with_a_seat(
    browser, live_server, page: Page, session, account, owner
):
    domain = factories.make_domain(session, account, "example.com", verified=True)
    sign_in(page, owner)
    page.goto("/enterprise/domains")
    assert page.evaluate("typeof window.htmx") == "object"  # the local copy
    row = page.locator(f"#domain-row-{domain.id}")
    expect(row.locator(".control-capture")).to_contain_text("Off")
    page.evaluate("window.__marker = 1")
    row.get_by_role("link", name="Turn capture on").click()
    row.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    row.get_by_role("button", name="Turn on").click()
    expect(page.locator(f"#domain-row-{domain.id} .control-capture")).to_contain_text("On")
    assert page.evaluate("window.__marker") == 1  # swapped in place, no page load
    session.expire_all()
    assert session.get(Domain, domain.id).capture is True

    newcomer = browser.new_context(base_url=live_server)
    newcomer.set_default_timeout(5000)
    tab = newcomer.new_page()
    tab.route("**/unpkg.com/**", lambda route: route.abort())
    try:
        tab.goto("/login")
        tab.get_by_role("link", name="Sign up").click()
        tab.get_by_label("Email").fill("newcomer@example.com")
        tab.get_by_label("Passphrase", exact=True).fill(NEW)
        tab.get_by_label("Repeat the passphrase").fill(NEW)
        tab.get_by_role("button", name="Sign up").click()
        expect(tab.get_by_role("heading", name="Check your email")).to_be_visible()

        session.expire_all()
        mail = session.scalar(
            select(OutboxEmail).where(OutboxEmail.to_addr == "newcomer@example.com")
        )
        tab.goto(LINK.search(mail.body_text).group(1))
        tab.get_by_role("button", name="Confirm my email").click()
        expect(tab.locator("body")).to_contain_text("You joined Example Inc")
    finally:
        newcomer.close()

    open_members(page)
    member_row = page.locator("tr", has_text="newcomer@example.com")
    expect(member_row).to_contain_text("Licensed")
    expect(page.locator("#seat-meter")).to_contain_text("2 of 50 licences in use")
