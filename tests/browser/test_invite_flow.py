"""Invite controls and invitations in a real browser (SPEC F13): the owner sets "Verified
domains only" on the Account settings page, then invites two people on the Members page,
one inside a verified domain and one outside, and sees one invited and one refused with
the reason, swapped in place."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Account, Membership
from tests import factories
from tests.browser.test_members_flow import sign_in

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "invite.png"  # /tmp/invite.png, to look at


def test_owner_restricts_invitations_then_invites_two_people(page: Page, session, account, owner):
    factories.make_domain(session, account, "example.com", verified=True)
    sign_in(page, owner)

    page.goto("/")
    page.get_by_role("link", name="Settings", exact=True).click()
    controls = page.locator("#invite-controls")
    controls.get_by_label("Verified domains only").check()
    page.evaluate("window.__marker = 1")
    controls.get_by_role("button", name="Save").click()
    expect(controls).to_contain_text("Invite controls saved.")
    assert page.evaluate("window.__marker") == 1  # swapped in place
    session.expire_all()
    assert session.scalar(select(Account.invite_policy)) == "verified"

    page.get_by_role("link", name="Members", exact=True).first.click()
    panel = page.locator("#invite-panel")
    panel.get_by_label("Email addresses").fill("ana@example.com, kim@elsewhere.test")
    page.evaluate("window.__marker = 2")
    panel.get_by_role("button", name="Invite").click()

    expect(page.locator("#invited")).to_contain_text("Invited 1: ana@example.com")
    expect(page.locator("#refused")).to_contain_text(
        "kim@elsewhere.test: Invitations to elsewhere.test are not allowed by this "
        "account's invite controls; add the domain to the list or verify it."
    )
    expect(page.locator("#seat-meter")).to_contain_text("2 of 50 licences in use")
    row = page.locator("#members-results tr", has_text="ana@example.com")
    expect(row).to_contain_text("invited")  # the list reloaded itself
    assert page.evaluate("window.__marker") == 2
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    session.expire_all()
    invited = session.scalars(
        select(Membership.email).where(Membership.invitation_token_hash.is_not(None))
    ).all()
    assert invited == ["ana@example.com"]
