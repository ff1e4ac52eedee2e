"""The account's "SCIM only" switch on the Account settings page (SPEC F13): owners turn
it on and off (CSRF, audited); co-owners see it read-only and get 403."""

from __future__ import annotations

from sqlalchemy import select

from models import Account, AuditEvent
from tests import factories

PAGE = "/enterprise/settings"


def _account(session, account) -> Account:
    session.expire_all()
    return session.get(Account, account.id)


def test_owner_turns_scim_only_on_and_off(client, session, account, as_owner):
    page = client.get(PAGE).get_data(as_text=True)
    assert "SCIM only" in page and "Turn SCIM only on" in page
    response = client.post(f"{PAGE}/scim-only", data={"on": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.lstrip().startswith('<section id="scim-only"') and "<html" not in text
    assert "SCIM only is on." in text
    assert _account(session, account).scim_only is True
    client.post(f"{PAGE}/scim-only", data={"on": "0"})
    assert _account(session, account).scim_only is False
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account.scim_only_changed")
    ).all()
    assert [e.detail for e in events] == [{"on": True}, {"on": False}]


def test_scim_only_needs_csrf(client, session, account, as_owner):
    assert client.post(f"{PAGE}/scim-only", data={"on": "1"}, csrf=False).status_code == 400
    assert _account(session, account).scim_only is False


def test_co_owner_sees_scim_only_read_only(client, session, account, login_as):
    co = factories.make_user(session, account=account, email="co@example.com", role="co-owner")
    login_as(co)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Turn SCIM only on" not in page and "Only an owner can change it." in page
    assert client.post(f"{PAGE}/scim-only", data={"on": "1"}).status_code == 403
    assert _account(session, account).scim_only is False
