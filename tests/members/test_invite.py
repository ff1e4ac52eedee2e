"""Invite people on the Members page (SPEC F13): one or many addresses, a summary of what
happened to each (invited, already members, refused by the invite controls with the
reason), errors next to the field that change nothing, CSRF, roles; and an invited person
accepting through the emailed link."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from models import Account, AuditEvent, Membership, OutboxEmail, User
from tests import factories
from tests.common.mail import links_in
from tests.members.conftest import MEMBERS, member

INVITE = f"{MEMBERS}/invite"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/enterprise/members"}
NEW = "a brand new passphrase for me"


@pytest.fixture
def verified(session, account):
    return factories.make_domain(session, account, "example.com", verified=True)


def _invite(client, emails: str, **kwargs):
    response = client.post(INVITE, data={"emails": emails}, headers=HTMX, **kwargs)
    return response, html.unescape(response.get_data(as_text=True))


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _section(text: str, element_id: str) -> str:
    return text.split(f'id="{element_id}"', 1)[1].split("</p>", 1)[0]


def test_members_page_has_the_invite_form(as_owner):
    page = as_owner.get(MEMBERS).get_data(as_text=True)

    assert 'id="invite-panel"' in page and 'name="emails"' in page
    assert f'hx-post="{INVITE}"' in page


def test_invite_several_at_once_with_a_summary(as_owner, session, account, verified):
    member(session, account, "lee@example.com")

    response, text = _invite(
        as_owner, "ana@example.com, bob@partner.test\nLEE@example.com ana@example.com"
    )

    assert response.status_code == 200
    assert text.lstrip().startswith('<section id="invite-panel"') and "<html" not in text
    assert "Invited 2: ana@example.com, bob@partner.test." in _section(text, "invited")
    assert "(1): LEE@example.com." in _section(text, "already-members")
    assert 'id="refused"' not in text
    assert 'id="seat-meter"' in text and 'hx-swap-oob="true"' in text  # seats taken
    assert response.headers["HX-Trigger"] == "members-changed"  # the list reloads
    assert "4 of 50 licences" in text.replace("<strong>", "").replace("</strong>", "")
    invited = session.scalars(
        select(Membership.email).where(Membership.invitation_token_hash.is_not(None))
    ).all()
    assert sorted(invited) == ["ana@example.com", "bob@partner.test"]
    assert _count(session, OutboxEmail) == 2
    assert _count(session, AuditEvent, AuditEvent.action == "membership.invited") == 2
    assert 'name="emails"' in text and "ana@example.com</textarea>" not in text  # cleared

    # Sent again: both are invited already, nobody twice.
    _, text = _invite(as_owner, "ana@example.com bob@partner.test")
    assert 'id="invited"' not in text
    assert "(2): ana@example.com, bob@partner.test." in _section(text, "already-members")
    assert _count(session, OutboxEmail) == 2


def test_invited_people_show_on_the_members_page(as_owner, session, verified):
    _invite(as_owner, "ana@example.com")

    page = as_owner.get(f"{MEMBERS}?status=invited").get_data(as_text=True)

    assert "ana@example.com" in page


@pytest.mark.parametrize(
    "policy, domains, invited, refused",
    [
        ("any", None, ["ana@example.com", "bob@partner.test", "cy@elsewhere.test"], []),
        ("verified", None, ["ana@example.com"], ["bob@partner.test", "cy@elsewhere.test"]),
        ("list", "partner.test", ["ana@example.com", "bob@partner.test"], ["cy@elsewhere.test"]),
    ],
)
def test_each_invite_controls_setting(
    as_owner, session, account, verified, policy, domains, invited, refused
):
    account.invite_policy, account.invite_domains = policy, domains
    session.commit()

    _, text = _invite(as_owner, "ana@example.com bob@partner.test cy@elsewhere.test")

    rows = session.scalars(
        select(Membership.email).where(Membership.invitation_token_hash.is_not(None))
    ).all()
    assert sorted(rows) == invited
    assert sorted(session.scalars(select(OutboxEmail.to_addr)).all()) == invited
    for email in refused:
        domain = email.split("@")[1]
        assert (
            f"<strong>{email}</strong>: Invitations to {domain} are not allowed by this "
            "account's invite controls; add the domain to the list or verify it." in text
        )
    assert ('id="refused"' in text) == bool(refused)


@pytest.mark.parametrize(
    "emails, message",
    [
        ("", "Enter one or more email addresses."),
        ("ana@example.com, not-an-email, b@c", "Not email addresses: not-an-email, b@c."),
        (" ".join(f"p{i}@example.com" for i in range(101)), "at most 100 people at a time"),
    ],
)
def test_bad_input_is_shown_next_to_the_field_and_changes_nothing(
    as_owner, session, verified, emails, message
):
    response, text = _invite(as_owner, emails)

    assert response.status_code == 422
    assert 'id="emails-error"' in text and message in _section(text, "emails-error")
    assert 'aria-invalid="true"' in text
    assert _count(session, Membership) == 1  # the owner
    assert _count(session, OutboxEmail) == 0


def test_invite_without_csrf_is_refused(as_owner, session):
    response, _ = _invite(as_owner, "ana@example.com", csrf=False)

    assert response.status_code == 400
    assert _count(session, Membership) == 1


def test_plain_form_post_answers_the_whole_page(as_owner, session):
    response = as_owner.post(INVITE, data={"emails": "ana@example.com"})

    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in text and 'id="members-results"' in text
    assert "Invited 1: ana@example.com." in html.unescape(text)


def test_co_owner_invites_and_member_gets_403(client, session, account, login_as):
    co_owner = factories.make_user(session, account, "co@example.com", role="co-owner")
    login_as(co_owner)
    response, _ = _invite(client, "ana@example.com")
    assert response.status_code == 200
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "membership.invited"))
    assert event.actor_user_id == co_owner.id and event.target == "ana@example.com"

    plain = factories.make_user(session, account, "plain@example.com")
    other = client.application.test_client()
    other.post("/login", data={"email": plain.email, "passphrase": factories.PASSPHRASE})
    assert other.post(INVITE, data={"emails": "x@example.com"}, headers=HTMX).status_code == 403


def test_no_seat_left_is_refused_with_the_reason(as_owner, session, account):
    account.seat_limit = 1
    session.commit()

    _, text = _invite(as_owner, "ana@example.com")

    assert "<strong>ana@example.com</strong>: Licence limit reached" in text
    assert _count(session, Membership) == 1


def _invitation_link(session, email: str) -> str:
    body = session.scalar(select(OutboxEmail.body_text).where(OutboxEmail.to_addr == email))
    (link,) = links_in(body)
    assert link.startswith("http://localhost/invitations/")
    return urlsplit(link).path


def test_invited_person_accepts_through_the_emailed_link(as_owner, session, account):
    _invite(as_owner, "kim@elsewhere.test")
    body = session.scalar(select(OutboxEmail.body_text))
    assert "owner@example.com invited you to join Example Inc" in body
    path = _invitation_link(session, "kim@elsewhere.test")

    browser = as_owner.application.test_client()  # the invited person, no account here
    page = browser.get(path).get_data(as_text=True)
    assert "An administrator of Example Inc invited" in page and 'name="passphrase"' in page
    response = browser.post(path, data={"passphrase": NEW, "confirm": NEW})

    assert response.status_code == 302
    session.expire_all()
    joined = session.scalar(select(Membership).where(Membership.email == "kim@elsewhere.test"))
    person = session.scalar(select(User).where(User.email_key == "kim@elsewhere.test"))
    assert joined.status == "active" and joined.user_id == person.id
    assert (joined.source, joined.role, joined.licensed) == ("manual", "member", True)
    assert session.scalar(select(Account.seats_used)) == 2  # the seat it held, not another
    assert browser.get(path).status_code == 410  # once
    assert browser.get("/account").status_code == 200  # signed in


def test_existing_person_signs_in_to_accept(as_owner, session, account):
    person = factories.make_user(session, email="lee@elsewhere.test")
    _invite(as_owner, "lee@elsewhere.test")
    path = _invitation_link(session, "lee@elsewhere.test")

    browser = as_owner.application.test_client()
    assert "Sign in as lee@elsewhere.test" in browser.get(path).get_data(as_text=True)
    browser.post("/login", data={"email": person.email, "passphrase": factories.PASSPHRASE})
    assert browser.post(path, data={}).status_code == 302

    session.expire_all()
    joined = session.scalar(select(Membership).where(Membership.email == "lee@elsewhere.test"))
    assert joined.user_id == person.id and joined.status == "active"
