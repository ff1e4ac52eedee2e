"""The deprovisioning policy in a real browser (SPEC F12): the owner chooses "Suspend for
N days, then remove" on the SCIM page, with a bad N first (the error next to the field),
then a good one; after the IdP deletes a user, the Members page shows "Scheduled for
removal on …" and Keep works behind the passphrase."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from blueprints.scim_settings import connector as scim_connector
from models import Membership, ScimConnector, SsoConnection, utcnow
from tests import factories
from tests.browser.test_members_flow import sign_in

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "deprovision.png"  # /tmp/deprovision.png
POLICY_SCREENSHOT = Path(tempfile.gettempdir()) / "deprovision_policy.png"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_owner_sets_suspend_then_keeps_a_deleted_member(app, page: Page, session, account, owner):
    factories.make_domain(session, account, "example.com", verified=True)
    session.add(
        SsoConnection(
            account_id=account.id, public_id="sso-b", protocol="oidc", enabled=True, test_ok=True
        )
    )
    session.commit()
    issued = scim_connector.enable(session, account.id, owner, "okta", "90", utcnow())
    session.commit()
    idp = app.test_client()
    base = f"/scim/v2/{issued.connector.public_id}"
    bearer = {"Authorization": f"Bearer {issued.token}"}
    created = idp.post(
        f"{base}/Users", json={"schemas": [USER], "userName": "gone@example.com"}, headers=bearer
    )
    assert created.status_code == 201, created.get_data(as_text=True)

    sign_in(page, owner)
    page.goto("/enterprise/scim")
    assert page.evaluate("typeof window.htmx") == "object"  # the local copy
    panel = page.locator("#deprovision-panel")
    expect(panel).to_contain_text("When the IdP deactivates or deletes a user")
    panel.get_by_label("Suspend for N days, then remove").check()
    days = panel.get_by_label("Number of days (N)")
    days.fill("400")
    page.evaluate("window.__marker = 1")
    panel.get_by_role("button", name="Save").click()
    expect(panel.locator("#days-error")).to_contain_text("from 1 to 365")
    expect(days).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("window.__marker") == 1  # swapped in place, no page load
    panel.screenshot(path=str(POLICY_SCREENSHOT))
    session.expire_all()
    assert session.scalar(select(ScimConnector)).deprovision_mode == "remove"

    days.fill("14")
    panel.get_by_role("button", name="Save").click()
    expect(panel).to_contain_text("Policy saved.")
    expect(panel.locator("#days-error")).to_have_count(0)
    expect(panel.get_by_label("Suspend for N days, then remove")).to_be_checked()
    session.expire_all()
    saved = session.scalar(select(ScimConnector))
    assert (saved.deprovision_mode, saved.suspend_days) == ("suspend", 14)

    deleted = idp.delete(f"{base}/Users/{created.get_json()['id']}", headers=bearer, csrf=False)
    assert deleted.status_code == 204
    session.expire_all()
    member = session.scalar(select(Membership).where(Membership.email == "gone@example.com"))
    when = member.removal_due_at.strftime("%Y-%m-%d %H:%M")

    page.goto("/enterprise/members")
    row = page.locator("tr", has_text="gone@example.com")
    expect(row).to_contain_text(f"Scheduled for removal on {when}")
    row.get_by_role("link", name="Keep").click()
    expect(row).to_contain_text("no longer managed by the identity provider")
    row.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    row.get_by_role("button", name="Keep").click()
    expect(row).to_contain_text("no longer scheduled for removal")
    expect(row).not_to_contain_text("Scheduled for removal on")
    expect(row.get_by_role("link", name="Reactivate")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    session.expire_all()
    kept = session.get(Membership, member.id)
    assert (kept.source, kept.removal_due_at, kept.active) == ("manual", None, False)
