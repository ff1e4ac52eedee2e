"""The dashboard and the SCIM checklist reflect the account's real state."""

import re

from models import SsoConnection
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


def test_plain_member_sees_no_enterprise_tiles(client, session, account, login_as):
    member = factories.make_user(session, account=account)
    login_as(member)
    page = client.get("/").get_data(as_text=True)
    assert "You are a member of this account" in page
    assert "/enterprise/domains" not in page
