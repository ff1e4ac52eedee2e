"""Unclaimed accounts in a real browser (SPEC F13): the owner opens a verified domain's
Unclaimed accounts from the Domains page, searches as they type, invites a ticked person
(the list swapped in place, the person gone from it); the search stays in the address
bar."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Membership
from tests import factories
from tests.browser.test_members_flow import sign_in

pytestmark = pytest.mark.browser


def test_owner_finds_and_invites_unclaimed_people_of_a_domain(page: Page, session, account, owner):
    factories.make_domain(session, account, "example.com", verified=True)
    for email in ("ana@example.com", "bo@example.com", "kim@elsewhere.test"):
        factories.make_user(session, email=email)
    sign_in(page, owner)

    page.goto("/enterprise/domains")
    page.get_by_role("link", name="Unclaimed accounts").click()
    page.wait_for_load_state()
    results = page.locator("#unclaimed-results")
    expect(results).to_contain_text("ana@example.com")
    expect(results).to_contain_text("bo@example.com")
    expect(results).not_to_contain_text("kim@elsewhere.test")  # another domain
    expect(results).not_to_contain_text(owner.email)  # a member already

    page.get_by_label("Search").fill("bo")
    expect(results.locator("tbody tr")).to_have_count(1)
    expect(results).to_contain_text("bo@example.com")
    assert "q=bo" in page.url  # in the address bar: a search can be shared
    page.get_by_label("Search").fill("")
    expect(results.locator("tbody tr")).to_have_count(2)

    page.evaluate("window.__marker = 1")
    page.get_by_label("Select ana@example.com").check()
    page.get_by_role("button", name="Invite selected").click()

    expect(page.locator("#unclaimed-summary")).to_contain_text("Invited 1: ana@example.com")
    expect(results.locator("tbody tr")).to_have_count(1)  # Ana is no longer unclaimed
    expect(results).to_contain_text("bo@example.com")
    assert page.evaluate("window.__marker") == 1  # swapped in place, no reload
    session.expire_all()
    invited = session.scalars(
        select(Membership.email).where(Membership.invitation_token_hash.is_not(None))
    ).all()
    assert invited == ["ana@example.com"]
