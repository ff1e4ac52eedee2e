"""Named SCIM tokens in a real browser (SPEC F11): New token (name, lifetime, passphrase),
copy it, Reveal token and Refresh Token → Passphrase → Refresh Token on that token's row,
then Revoke another; outside the browser, the revoked one is refused and the new one
works."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from blueprints.scim_settings import connector as service
from models import utcnow
from tests import factories
from tests.browser.test_scim_flow import TOKEN, sign_in
from tests.scim_settings.conftest import ready  # noqa: F401  (verified domain + SSO on)

pytestmark = pytest.mark.browser


def confirm(row, button: str) -> None:
    """The passphrase form a token button swapped into that token's row."""
    field = row.get_by_label("Passphrase")
    expect(field).to_be_focused()
    field.fill(factories.PASSPHRASE)
    row.get_by_role("button", name=button, exact=True).click()


def test_owner_creates_copies_reveals_refreshes_a_named_token_and_revokes_another(
    page: Page,
    session,
    ready,  # noqa: F811
    owner,
):
    enabled = service.enable(session, ready.id, owner, "okta", "365", utcnow())
    session.commit()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    page.goto("/enterprise/scim")
    page.evaluate("window.__marker = 1")  # a full page load would wipe it out

    # New token: name, lifetime, passphrase; shown once in its row, with a copy button.
    page.get_by_role("button", name="New token").click()
    form = page.locator("#connector-actions")
    expect(form.get_by_label("Token name")).to_be_focused()
    form.get_by_label("Token name").fill("Okta production")
    form.get_by_label("Token lifetime").select_option(label="90 days")
    form.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    form.get_by_role("button", name="Create token").click()

    row = page.locator("tbody.token", has_text="Okta production")
    created = row.locator("#scim-token")
    expect(created).to_be_visible()
    secret = created.inner_text()
    assert TOKEN.fullmatch(secret) and secret != enabled.token
    expect(row.locator(".token-state")).to_have_text("Valid")
    copy = row.locator("button.copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # Reveal token, on that row.
    row.get_by_role("button", name="Hide token").click()
    expect(page.locator("#scim-token")).to_have_count(0)
    row.get_by_role("button", name="Reveal token").click()
    confirm(row, "Reveal token")
    expect(row.locator("#scim-token")).to_have_text(secret)

    # Refresh Token → Passphrase → Refresh Token, on that row.
    row.get_by_role("button", name="Refresh Token").click()
    confirm(row, "Refresh Token")
    expect(row.locator(".grace-note")).to_contain_text("The previous token keeps working until")
    renewed = row.locator("#scim-token").inner_text()
    assert TOKEN.fullmatch(renewed) and renewed != secret

    # Revoke another: "Default".
    default = page.locator("tbody.token", has_text="Default")
    default.get_by_role("button", name="Revoke").click()
    expect(default).to_contain_text("the other tokens keep working")
    confirm(default, "Revoke")
    expect(page.get_by_role("status")).to_contain_text("Token “Default” revoked")
    expect(default.locator(".token-state")).to_have_text("Revoked")
    expect(default.get_by_role("button", name="Reveal token")).to_have_count(0)
    expect(
        page.locator("tbody.token", has_text="Okta production").locator(".token-state")
    ).to_have_text(re.compile("Valid"))
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"

    # Outside the browser: "Default" is refused, the refreshed token works.
    session.expire_all()
    public_id = enabled.connector.public_id
    now = utcnow()
    assert service.authenticate(session, public_id, f"Bearer {enabled.token}", now).reason == (
        "revoked"
    )
    assert service.authenticate(session, public_id, f"Bearer {renewed}", now).reason is None


def test_owner_pins_a_read_only_token_to_ranges_fixing_a_typo_then_opens_it(
    page: Page,
    session,
    ready,  # noqa: F811
    owner,
):
    service.enable(session, ready.id, owner, "okta", "365", utcnow())
    session.commit()
    sign_in(page, owner)
    page.goto("/enterprise/scim")

    # New token with a range mistyped: the error is next to the field, what was typed stays,
    # and the field in error has the focus (what the owner types next goes there).
    page.get_by_role("button", name="New token").click()
    form = page.locator("#connector-actions")
    form.get_by_label("Token name").fill("Reporting")
    form.get_by_label("IP allow-list").fill("10.1.2.3/16\n2001:db8::/32")
    form.get_by_label("Read-only").check()
    form.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    form.get_by_role("button", name="Create token").click()
    field = page.get_by_label("IP allow-list")
    expect(page.locator("#allowed_networks-error")).to_have_text(
        "“10.1.2.3/16” has bits set past its prefix: did you mean 10.1.0.0/16?"
    )
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(field).to_have_value("10.1.2.3/16\n2001:db8::/32")
    expect(page.get_by_label("Read-only")).to_be_checked()
    expect(page.locator("#scim-token")).to_have_count(0)

    field.fill("10.1.0.0/16\n2001:db8::/32")
    form.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    form.get_by_role("button", name="Create token").click()
    row = page.locator("tbody.token", has_text="Reporting")
    expect(row.locator("#scim-token")).to_be_visible()
    access = row.locator("td.token-access")
    expect(access).to_contain_text("Read-only")
    expect(access).to_contain_text("10.1.0.0/16, 2001:db8::/32")

    # Change access: the allow-list emptied, the box unticked.
    row.get_by_role("button", name="Hide token").click()
    row.get_by_role("button", name="Change access").click()
    allow_list = row.get_by_label("IP allow-list")
    expect(allow_list).to_have_value("10.1.0.0/16\n2001:db8::/32")
    expect(allow_list).to_be_focused()
    allow_list.fill("")
    row.get_by_label("Read-only").uncheck()
    row.get_by_label("Passphrase").fill(factories.PASSPHRASE)
    row.get_by_role("button", name="Save access").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Access of “Reporting” changed: Read and write, from any address."
    )
    expect(row.locator("td.token-access")).to_contain_text("any address")
