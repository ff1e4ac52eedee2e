"""The SCIM preview in a real browser (SPEC F12): Enable SCIM with "Preview first (dry
run)", the IdP pushes users over HTTP, the forecast page shows what they would do and the
seats they need, Go live (confirmed), and the page says to restart provisioning."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from models import Account, Membership
from tests.browser.test_scim_flow import sign_in
from tests.scim_settings.conftest import ready  # noqa: F401  (verified domain + SSO on)

pytestmark = pytest.mark.browser

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCREENSHOT = Path(tempfile.gettempdir()) / "scim-preview.png"  # to look at


def test_owner_previews_then_goes_live(page, session, live_server, ready, owner):  # noqa: F811
    account = session.get(Account, ready.id)
    account.seat_limit = account.seats_used + 2  # two seats free
    session.commit()
    sign_in(page, owner)
    page.get_by_role("navigation").get_by_role("link", name="SCIM").click()

    page.get_by_label("Identity provider").select_option(label="Okta")
    page.get_by_label("Preview first (dry run)").check()
    page.get_by_role("button", name="Enable SCIM").click()
    expect(page.locator("#scim-mode")).to_have_text("Preview")
    expect(page.locator("#preview-seats")).to_contain_text("Seats needed: 0 of 2 free")
    token = page.locator("#scim-token").inner_text()
    path = re.sub(r"^https?://[^/]+", "", page.locator("#scim-url").inner_text())

    # The IdP's first sync: three new people, one invitation; two seats free.
    for name in ("a@example.com", "b@example.com", "c@example.com", "guest@elsewhere.test"):
        response = requests.post(
            f"{live_server}{path}/Users",
            json={"schemas": [USER], "userName": name},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text

    page.get_by_role("link", name="Open the forecast on its own page").click()
    expect(page.get_by_role("heading", name="SCIM preview")).to_be_visible()
    expect(page.locator("#preview-seats")).to_contain_text("Seats needed: 4 of 2 free")
    expect(page.locator("#preview-seats")).to_contain_text("2 would be refused")
    expect(page.locator("#preview-created .count")).to_have_text("2")
    expect(page.locator("#preview-refused .count")).to_have_text("2")
    expect(page.locator("#preview-refused")).to_contain_text("guest@elsewhere.test")
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Go live").click()
    expect(page.locator("#went-live")).to_contain_text("Nothing from the preview was applied")
    expect(page.locator("#went-live")).to_contain_text(
        "Restart provisioning in Okta (Push Groups / Force Sync)"
    )
    expect(page.get_by_role("button", name="Switch to preview")).to_be_visible()
    session.expire_all()
    members = session.query(Membership).filter(Membership.account_id == ready.id).count()
    assert members == 1  # the owner: nothing from the preview was applied
