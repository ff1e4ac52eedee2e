"""The dashboard and the SCIM checklist reflect the account's real state."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from models import SsoConnection, utcnow
from tests import factories


def _sso(session, account, enabled: bool) -> None:
    session.add(
        SsoConnection(account_id=account.id, public_id="pub-test", protocol="oidc", enabled=enabled)
    )
    session.commit()


def test_dashboard_counts_members_seats_and_domains(client, session, account, owner, login_as):
    factories.make_user(session, account=account, email="a@example.com")
    factories.make_user(session, account=account, email="b@example.com", active=False)
    factories.make_domain(session, account, "example.com", verified=True)
    factories.make_domain(session, account, "example.org")
    login_as(owner)
    page = client.get("/").get_data(as_text=True)
    assert "1 of 2 verified" in page
    assert "3 members · 2 of 50 seats" in page
    assert "Connect your identity provider" in page


def test_dashboard_and_scim_checklist_show_sso_enabled(client, session, account, owner, login_as):
    factories.make_domain(session, account, "example.com", verified=True)
    _sso(session, account, enabled=True)
    login_as(owner)
    assert "Enabled (OpenID Connect)" in client.get("/").get_data(as_text=True)
    checklist = client.get("/enterprise/scim").get_data(as_text=True)
    assert len(re.findall(r'<li class="done">', checklist)) == 2


def test_scim_checklist_leaves_sso_open_while_it_is_off(client, session, account, owner, login_as):
    _sso(session, account, enabled=False)
    login_as(owner)
    checklist = client.get("/enterprise/scim").get_data(as_text=True)
    assert '<li class="done">' not in checklist


def test_plain_member_lands_on_their_own_account_page(client, session, account, login_as):
    member = factories.make_user(session, account=account)
    login_as(member)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    page = client.get("/account").get_data(as_text=True)
    assert f"You are a member of {account.name}" in page
    assert member.email in page
    assert "/enterprise/domains" not in page


def _failing_scim(session, account, owner, expires_in: timedelta):
    """SCIM on with a 30-day token expiring `expires_in` from now, whose automatic refresh
    fails because SSO was turned off."""
    from blueprints.scim_settings import connector as scim
    from blueprints.scim_settings.jobs import refresh_tokens

    factories.make_domain(session, account, "example.com", verified=True)
    _sso(session, account, enabled=True)
    now = utcnow()
    scim.enable(session, account.id, owner, "okta", "30", now - timedelta(days=30) + expires_in)
    session.execute(update(SsoConnection).values(enabled=False))
    session.commit()
    refresh_tokens(now)


def test_dashboard_warns_owners_while_scim_token_refresh_fails(
    client, session, account, owner, login_as
):
    _failing_scim(session, account, owner, timedelta(days=12, hours=-1))
    co_owner = factories.make_user(
        session, account=account, email="co@example.com", role="co-owner"
    )

    for admin in (owner, co_owner):
        login_as(admin)
        page = client.get("/").get_data(as_text=True)
        banner = re.search(r'<p class="banner warning" id="scim-warning".*?</p>', page, re.S)
        assert banner, page
        assert "Your SCIM token expires in 11 days." in banner.group(0)
        assert "Single sign-on is off." in banner.group(0)
        assert 'href="/enterprise/scim"' in banner.group(0)
        client.get("/logout")


def test_dashboard_says_when_scim_token_has_expired(client, session, account, owner, login_as):
    _failing_scim(session, account, owner, timedelta(days=-2))
    login_as(owner)
    page = client.get("/").get_data(as_text=True)
    assert "Your SCIM token has expired" in page
    assert "only a manual refresh renews it" in page


def test_dashboard_hides_scim_warning_from_plain_members(client, session, account, owner, login_as):
    _failing_scim(session, account, owner, timedelta(days=5))
    member = factories.make_user(session, account=account)
    login_as(member)
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert 'id="scim-warning"' not in page
    assert "SCIM token" not in page


@pytest.mark.parametrize(
    "expires_in",
    [timedelta(days=21), timedelta(days=5)],
    ids=["failing-but-far-from-expiry", "near-expiry-not-failing"],
)
def test_dashboard_shows_no_scim_warning_unless_failing_near_expiry(
    client, session, account, owner, login_as, expires_in
):
    from blueprints.scim_settings import connector as scim

    factories.make_domain(session, account, "example.com", verified=True)
    _sso(session, account, enabled=True)
    connector = scim.enable(
        session, account.id, owner, "okta", "30", utcnow() - timedelta(days=30) + expires_in
    ).scim_token
    if expires_in > timedelta(days=20):
        connector.refresh_failure_reason = "Single sign-on is off."
        session.commit()
    login_as(owner)
    page = client.get("/").get_data(as_text=True)
    assert 'id="scim-warning"' not in page
