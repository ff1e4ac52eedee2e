"""The Audit log page in a real browser: the actor filter filled in (as autofill or a
paste does: one input event) narrows the list in place and pushes the URL; a bad date
shows its error next to the field without taking the focus; the back button returns to
the whole list; an event opens its detail view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import insert

from models import AuditEvent
from tests import factories

pytestmark = pytest.mark.browser
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def rows(page: Page):
    return page.locator("#audit-results tbody tr[id^='event-']")


@pytest.fixture
def events(session, account, owner):
    ada = factories.make_user(session, account, "ada@example.com", role="co-owner", passphrase=None)
    for day, (action, actor, target) in enumerate(
        [
            ("domain.added", owner, "domain:example.com"),
            ("sso.enabled", ada, None),
            ("member.deactivate", owner, "member:linus@example.com"),
            ("scim.token_revealed", ada, None),
        ]
    ):
        session.execute(
            insert(AuditEvent).values(
                account_id=account.id,
                action=action,
                actor_user_id=actor.id,
                target=target,
                detail={"changes": {"active": [True, False]}} if "deactivate" in action else None,
                created_at=START + timedelta(days=day),
            )
        )
    session.commit()


def test_owner_filters_the_audit_log_in_place_and_goes_back(page, owner, events):
    page.goto("/login")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(rows(page)).to_have_count(5)  # the four, under the owner's own sign-in
    expect(rows(page).first).to_contain_text("Signed in")
    expect(rows(page).first).to_contain_text(owner.email)
    page.evaluate("window.__marker = 1")

    page.get_by_label("Actor").fill("ada@example.com")

    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(r"/enterprise/audit\?actor=ada(%40|@)example\.com$"))
    expect(rows(page).first).to_contain_text("SCIM token revealed")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"

    # A bad date (typed, then Enter, where the browser has no date picker): the error
    # appears next to the field, which keeps the focus and its value.
    page.eval_on_selector("#audit-since", "e => e.type = 'text'")
    page.get_by_label("From").fill("1 March")
    page.get_by_label("From").press("Enter")  # submits the form, through htmx
    expect(page.locator("#audit-since-error")).to_have_text("Enter a date as YYYY-MM-DD.")
    expect(page.get_by_label("From")).to_be_focused()
    expect(page.get_by_label("From")).to_have_value("1 March")
    page.get_by_label("From").fill("2026-03-03")
    page.get_by_label("From").press("Enter")
    expect(page.locator("#audit-since-error")).to_be_hidden()
    expect(rows(page)).to_have_count(1)

    # Back, as far as the unfiltered list (each filter change pushed a URL).
    whole = re.compile(r"/enterprise/audit$")
    for _ in range(4):
        page.go_back()
        try:
            expect(page).to_have_url(whole, timeout=1500)
            break
        except AssertionError:
            continue
    expect(page).to_have_url(whole)
    expect(rows(page)).to_have_count(5)

    rows(page).nth(2).get_by_role("link").click()
    expect(page.get_by_role("heading", name="Member deactivated")).to_be_visible()
    expect(page.locator("#audit-changes")).to_contain_text("active")
