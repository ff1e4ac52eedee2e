"""Outside the verified domains nobody is joined silently (SPEC F5): the IdP's user is
"invited" until the person accepts from the emailed link, through real SMTP."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from blueprints.common.outbox import deliver_due
from models import AuditEvent, Membership, User, utcnow
from tests import factories
from tests.common.mail import links_in, received, text_of
from tests.scim_api.conftest import provision

NEW = "a brand new passphrase for me"


def _provision(scim, email: str) -> dict:
    return provision(scim, email)


def _invitation_path(smtp_server) -> str:
    deliver_due(utcnow())
    (message,) = [m for m in received(smtp_server) if "invited" in m["Subject"]]
    (link,) = links_in(text_of(message))
    assert link.startswith("http://localhost/invitations/")  # absolute (SPEC F7)
    return urlsplit(link).path


def _member(session, scim_id: str) -> Membership:
    session.expire_all()
    return session.scalar(select(Membership).where(Membership.scim_id == scim_id))


def test_new_person_chooses_a_passphrase_and_joins(scim, client, session, smtp_server):
    created = _provision(scim, "kim@elsewhere.test")
    assert _member(session, created["id"]).status == "invited"
    path = _invitation_path(smtp_server)

    page = client.get(path)
    assert page.status_code == 200 and "kim@elsewhere.test" in page.get_data(as_text=True)
    response = client.post(path, data={"passphrase": NEW, "confirm": NEW})

    assert response.status_code == 302
    member = _member(session, created["id"])
    assert member.status == "active" and member.user.email == "kim@elsewhere.test"
    assert client.get("/enterprise/members").status_code == 403  # a member, not an owner
    assert session.scalar(
        select(AuditEvent).where(AuditEvent.action == "membership.invitation_accepted")
    )


def test_link_works_once(scim, client, session, smtp_server):
    _provision(scim, "kim@elsewhere.test")
    path = _invitation_path(smtp_server)
    client.post(path, data={"passphrase": NEW, "confirm": NEW})

    assert factories_client(client).get(path).status_code == 410


def factories_client(client):
    """A fresh browser (no session) on the same app."""
    return client.application.test_client()


def test_existing_person_must_sign_in_as_the_invited_address(
    scim, client, session, smtp_server, login_as
):
    person = factories.make_user(session, email="lee@elsewhere.test")
    created = _provision(scim, "lee@elsewhere.test")
    path = _invitation_path(smtp_server)

    assert "Sign in as lee@elsewhere.test" in client.get(path).get_data(as_text=True)
    assert _member(session, created["id"]).user_id is None  # not joined silently

    login_as(person)
    assert client.post(path, data={}).status_code == 302
    assert _member(session, created["id"]).user_id == person.id


def test_someone_else_signed_in_cannot_accept(scim, client, session, smtp_server, login_as):
    _provision(scim, "lee@elsewhere.test")
    path = _invitation_path(smtp_server)
    login_as(factories.make_user(session, email="mallory@elsewhere.test"))

    assert client.post(path, data={}).status_code == 403
    assert session.scalar(select(User).where(User.email_key == "lee@elsewhere.test")) is None


def test_unknown_token_is_gone(client):
    assert client.get("/invitations/not-a-token").status_code == 410
