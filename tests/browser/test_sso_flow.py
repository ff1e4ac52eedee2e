"""Single sign-on in a real browser, against a real OpenID Connect provider (Canaille,
run by pytest-iam): the owner configures OIDC, runs a test sign-in that really goes to the
IdP and back, enables SSO with the passphrase, and a member then signs in through the IdP.

The app is served on its own port here, so BASE_URL is the live server's URL and the
client registered at the IdP allows exactly the redirect URI the SSO page shows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import SsoConnection
from tests import factories
from tests.sso.iam import issuer_of, register_client

pytestmark = pytest.mark.browser

SCREENSHOT = Path(tempfile.gettempdir()) / "sso.png"  # /tmp/sso.png, to look at


@pytest.fixture
def base_url(app, live_server) -> str:
    """The served app's absolute URLs (redirect URI, links) name the live server."""
    app.config["BASE_URL"] = live_server
    return live_server


@pytest.fixture
def idp_client(iam_server, base_url):
    client = register_client(iam_server, base_url + "/sso/oidc/callback")
    yield client
    iam_server.backend.delete(client)


def sign_in(page: Page, email: str, passphrase: str | None = None) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    if passphrase is not None:
        page.get_by_label("Passphrase").fill(passphrase)
    page.get_by_role("button", name="Sign in").click()


def test_owner_sets_up_oidc_and_member_signs_in_through_idp(
    page, session, account, owner, iam_server, idp_client, idp_user, base_url
):
    factories.make_domain(session, account, "example.com", verified=True)
    factories.make_user(session, account=account, email="member@example.com")
    sign_in(page, owner.email, factories.PASSPHRASE)
    page.get_by_role("navigation").get_by_role("link", name="SSO").click()
    expect(page.get_by_role("heading", name="Single sign-on")).to_be_visible()
    assert page.evaluate("typeof window.htmx") == "object"  # the local copy, CDN blocked

    # Nothing chosen for the owner: they pick OpenID Connect, in place.
    expect(page.locator("#protocol-choice")).to_be_visible()
    page.evaluate("window.__marker = 1")
    page.get_by_role("link", name="OpenID Connect").click()
    # The redirect URI the page shows is the one registered at the IdP.
    expect(page.locator("#oidc-redirect")).to_have_text(base_url + "/sso/oidc/callback")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    # Saved without the issuer: the error is next to it, and it has the focus.
    page.get_by_label("Client ID").fill(idp_client.client_id)
    page.get_by_role("button", name="Save OIDC settings").click()
    expect(page.locator("#issuer-error")).to_have_text("Enter the issuer URL.")
    expect(page.get_by_label("Issuer URL")).to_be_focused()
    page.get_by_label("Issuer URL").fill(issuer_of(iam_server))
    page.get_by_label("Client ID").fill(idp_client.client_id)
    page.get_by_label("Client secret").fill(idp_client.client_secret)
    page.get_by_role("button", name="Save OIDC settings").click()
    status = page.locator("#sso-status")
    expect(status).to_contain_text("Not tested since the last change.")
    expect(status).to_contain_text("To enable SSO: run a successful test sign-in.")

    # Test sign-in: a real trip to the IdP (signed in there already) and back.
    idp_user("owner@example.com")
    with page.expect_request(lambda r: r.url.startswith(issuer_of(iam_server))):
        status.get_by_role("button", name="Test sign-in").click()
    expect(status.locator(".test-result")).to_contain_text(
        "Test passed Signed in as owner@example.com."
    )
    assert page.url == base_url + "/enterprise/sso"
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Enable, with the passphrase asked in place.
    status.get_by_role("button", name="Enable SSO").click()
    passphrase = page.locator("#sso-action").get_by_label("Passphrase")
    expect(passphrase).to_be_focused()
    passphrase.fill("not my passphrase")
    page.locator("#sso-action").get_by_role("button", name="Enable SSO").click()
    expect(page.locator("#passphrase-error")).to_have_text("That passphrase is incorrect.")
    page.locator("#sso-action").get_by_label("Passphrase").fill(factories.PASSPHRASE)
    page.locator("#sso-action").get_by_role("button", name="Enable SSO").click()
    expect(status).to_contain_text("OpenID Connect: Enabled")
    expect(status.get_by_role("button", name="Disable SSO")).to_be_visible()
    expect(page.locator("#sso-config")).to_have_count(0)
    session.expire_all()
    assert session.scalar(select(SsoConnection)).enabled

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    # The member types only the email, goes to the IdP and lands on their account page.
    idp_user("member@example.com")
    with page.expect_request(lambda r: r.url.startswith(issuer_of(iam_server))):
        sign_in(page, "member@example.com")
    expect(page.locator(".who")).to_have_text("member@example.com")
    assert page.url == base_url + "/account"
