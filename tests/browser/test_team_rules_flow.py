"""Team rules in a real browser (SPEC F12): the owner adds a rule for a SCIM team on the
Teams tab, sees "Applying to N members…" until the job has run, then the member's new role
on the Members page."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import app as app_module
from models import Membership
from tests.browser.test_members_flow import sign_in
from tests.members.conftest import make_team, scim_member

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "team_rules.png"  # /tmp/team_rules.png, to look at


def test_owner_adds_a_rule_sees_progress_then_the_members_role(
    app, page: Page, session, account, owner
):
    alan = scim_member(session, account, "alan@example.com", "Alan Turing")
    make_team(session, account, "Admins", members=[alan])
    sign_in(page, owner)
    page.goto("/enterprise/members/teams")
    assert page.evaluate("typeof window.htmx") == "object"  # the local copy

    rules = page.locator("#team-rules")
    expect(rules).to_contain_text("the first rule in the list wins")
    rules.get_by_label("Team").select_option(label="Admins")
    rules.get_by_label("Role").select_option(label="Co-owner")
    rules.get_by_label("Licence").select_option(label="Uses a licence")
    page.evaluate("window.__marker = 1")
    rules.get_by_role("button", name="Add rule").click()

    expect(page.locator("#rule-progress")).to_contain_text("Applying to 1 member…")
    expect(page.locator("#team-rules .rule-team")).to_have_text(["Admins"])
    assert page.evaluate("window.__marker") == 1  # swapped in place, no page load
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    app_module.run_job(app, "apply-team-rules")
    # The progress polls itself: it says so without a reload.
    expect(page.locator("#rule-progress")).to_contain_text(
        "Rules applied to 1 member ", timeout=8000
    )

    page.goto("/enterprise/members?q=alan")
    row = page.locator("tr", has_text="alan@example.com")
    expect(row).to_contain_text("co-owner")
    session.expire_all()
    assert session.get(Membership, alan.id).role == "co-owner"
