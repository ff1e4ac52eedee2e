"""Self sign-up (SPEC F13): email + passphrase, confirmed by a single-use, expiring link
through the outbox; nobody can sign in before confirming; the answer never tells whether
the address has an account; domain capture joins the person (a seat; no seat left: a
clear page and one email a day to the owners); domain lock refuses unless invited; SCIM
only turns capture off; sign-ups per address are throttled."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from blueprints.auth import signup
from models import Account, AuditEvent, Membership, OutboxEmail, Signup, User, utcnow
from tests import factories

NEW = "new phrase for a new person"
LINK = re.compile(r"http://localhost(/signup/confirm/[A-Za-z0-9_-]+)")


@pytest.fixture
def captured(session, account, owner):
    """example.com verified by the account, capture on."""
    return factories.make_domain(session, account, "example.com", verified=True, capture=True)


def _sign_up(client, email: str, passphrase: str = NEW, confirm: str | None = None, **kw):
    data = {"email": email, "passphrase": passphrase, "confirm": confirm or passphrase}
    return client.post("/signup", data=data, **kw)


def _mails(session, to: str) -> list[OutboxEmail]:
    session.expire_all()
    return list(
        session.scalars(
            select(OutboxEmail).where(OutboxEmail.to_addr == to).order_by(OutboxEmail.id)
        )
    )


def _link(session, to: str) -> str:
    [mail] = [m for m in _mails(session, to) if m.subject == "Confirm your email address"]
    return LINK.search(mail.body_text).group(1)


def _user(session, email: str) -> User | None:
    session.expire_all()
    return session.scalar(select(User).where(User.email_key == email.lower()))


def _member(session, account, user) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.account_id == account.id, Membership.user_id == user.id)
    )


def _events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_sign_up_is_linked_from_the_sign_in_page(client):
    assert 'href="/signup"' in client.get("/login").get_data(as_text=True)
    page = client.get("/signup").get_data(as_text=True)
    assert 'name="email"' in page and 'name="confirm"' in page


def test_sign_up_emails_a_link_and_nobody_signs_in_before_it_is_opened(client, session):
    response = _sign_up(client, "kim@free.test")

    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    assert _user(session, "kim@free.test") is None
    row = session.scalar(select(Signup))
    assert row.passphrase_hash.startswith("$argon2id$") and len(row.token_hash) == 64
    link = _link(session, "kim@free.test")
    assert link.rsplit("/", 1)[1] not in row.token_hash  # only the hash is kept

    refused = client.post("/login", data={"email": "kim@free.test", "passphrase": NEW})
    assert refused.status_code == 401
    assert "Confirm your email address first" in refused.get_data(as_text=True)
    wrong = client.post("/login", data={"email": "kim@free.test", "passphrase": "not it at all"})
    assert "Email or passphrase is incorrect." in wrong.get_data(as_text=True)

    page = client.get(link)
    assert page.status_code == 200 and "Confirm my email" in page.get_data(as_text=True)
    assert _user(session, "kim@free.test") is None  # a GET (a mail scanner) makes nobody

    done = client.post(link)
    assert done.status_code == 302
    landing = client.get(done.headers["Location"], follow_redirects=True)
    assert landing.status_code == 200
    assert "Your email is confirmed." in landing.get_data(as_text=True)
    user = _user(session, "kim@free.test")
    assert user is not None and user.memberships == []
    assert [e.actor_user_id for e in _events(session, "user.signed_up")] == [user.id]

    again = client.post(link)  # single use
    assert again.status_code == 410
    client.post("/logout")
    assert (
        client.post("/login", data={"email": "kim@free.test", "passphrase": NEW}).status_code == 302
    )


def test_the_link_expires(client, session, app):
    _sign_up(client, "kim@free.test")
    link = _link(session, "kim@free.test")
    row = session.scalar(select(Signup))
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()

    assert client.get(link).status_code == 410
    assert client.post(link).status_code == 410
    assert _user(session, "kim@free.test") is None


def test_link_lifetime_is_a_day(client, session):
    before = utcnow()
    _sign_up(client, "kim@free.test")
    row = session.scalar(select(Signup))
    assert (
        timedelta(hours=23, minutes=59) < row.expires_at - before <= timedelta(hours=24, minutes=1)
    )


def test_an_existing_address_gets_the_same_answer_and_an_email_saying_so(client, session, owner):
    response = _sign_up(client, "Owner@Example.com")

    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    [mail] = _mails(session, "owner@example.com")
    assert mail.subject == "You already have an account"
    assert "/signup/confirm/" not in mail.body_text
    assert session.get(User, owner.id).passphrase_hash == owner.passphrase_hash


def test_bad_input_is_shown_next_to_the_field_and_changes_nothing(client, session):
    differ = _sign_up(client, "kim@free.test", confirm="something else entirely")
    assert differ.status_code == 422 and "The two passphrases differ." in differ.get_data(
        as_text=True
    )
    short = _sign_up(client, "kim@free.test", passphrase="short")
    assert short.status_code == 422
    bad = _sign_up(client, "not an email")
    assert bad.status_code == 422
    assert session.scalar(select(func.count()).select_from(Signup)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxEmail)) == 0


def test_sign_up_needs_csrf(client, session):
    assert _sign_up(client, "kim@free.test", csrf=False).status_code == 400
    assert session.scalar(select(func.count()).select_from(Signup)) == 0


def test_captured_domain_joins_the_account_with_a_seat(client, session, account, captured):
    seats = session.get(Account, account.id).seats_used
    _sign_up(client, "ana@Example.com")
    response = client.post(_link(session, "ana@Example.com"))

    assert response.status_code == 302
    user = _user(session, "ana@example.com")
    member = _member(session, account, user)
    assert (member.role, member.active, member.licensed, member.source) == (
        "member",
        True,
        True,
        "manual",
    )
    assert session.get(Account, account.id).seats_used == seats + 1
    [event] = _events(session, "domain.capture_joined")
    assert (event.account_id, event.target, event.detail) == (
        account.id,
        "ana@Example.com",
        {"via": "signup"},
    )


def test_capture_off_makes_the_person_without_a_membership(client, session, account, captured):
    captured.capture = False
    session.commit()
    _sign_up(client, "ana@example.com")
    client.post(_link(session, "ana@example.com"))

    assert _user(session, "ana@example.com").memberships == []


def test_scim_only_turns_capture_off(client, session, account, captured):
    account.scim_only = True
    session.commit()
    _sign_up(client, "ana@example.com")
    client.post(_link(session, "ana@example.com"))

    assert _user(session, "ana@example.com").memberships == []


def test_no_seat_left_refuses_clearly_and_tells_the_owners_once_a_day(
    client, session, account, owner, captured
):
    co = factories.make_user(session, account=account, email="co@example.com", role="co-owner")
    account.seat_limit = session.get(Account, account.id).seats_used
    session.commit()

    for email in ("ana@example.com", "bob@example.com"):
        _sign_up(client, email)
        response = client.post(_link(session, email))
        assert response.status_code == 403
        assert "Example Inc has no seat left; ask its owners." in response.get_data(as_text=True)
        user = _user(session, email)
        assert user is not None and _member(session, account, user) is None
        assert client.get("/account").status_code == 302  # not signed in

    assert session.get(Account, account.id).seats_used == account.seat_limit
    assert [e.target for e in _events(session, "domain.capture_refused")] == [
        "ana@example.com",
        "bob@example.com",
    ]
    for admin in (owner, co):
        [mail] = [m for m in _mails(session, admin.email) if "refused" in m.subject]
        assert "ana@example.com" in mail.body_text  # the first refusal's email, once a day
    assert (
        session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.subject.contains("refused"))
        )
        == 2
    )


def test_daily_email_lists_the_days_refusals_and_comes_again_the_next_day(
    session, account, owner, captured
):
    from blueprints.domains import capture

    now = utcnow()
    account.seat_limit = account.seats_used
    session.commit()
    capture.refuse(session, account, "ana@example.com", "sso", now)
    capture.refuse(session, account, "bob@example.com", "sso", now)
    capture.refuse(session, account, "cy@example.com", "sso", now + timedelta(days=1))
    session.commit()

    mails = [m for m in _mails(session, "owner@example.com") if "refused" in m.subject]
    assert len(mails) == 2
    assert "ana@example.com" in mails[0].body_text and "cy@example.com" not in mails[0].body_text
    assert "cy@example.com" in mails[1].body_text and "bob@example.com" in mails[1].body_text


def test_locked_domain_refuses_sign_up_next_to_the_field(client, session, account, captured):
    captured.locked = True
    session.commit()

    response = _sign_up(client, "ana@example.com")

    assert response.status_code == 422
    assert "example.com is managed by its organisation" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Signup)) == 0


def test_locked_domain_lets_an_invited_person_sign_up(client, session, account, owner, captured):
    from blueprints.invitations import services as invitations
    from tests.members.conftest import membership_of

    captured.locked = True
    session.commit()
    invitations.invite(
        session, account.id, membership_of(session, owner, account), ["ana@example.com"], utcnow()
    )
    session.commit()

    assert _sign_up(client, "Ana@example.com").status_code == 200
    assert client.post(_link(session, "Ana@example.com")).status_code == 302
    assert _user(session, "ana@example.com") is not None


def test_lock_turned_on_after_sign_up_refuses_the_confirmation(client, session, account, captured):
    _sign_up(client, "ana@example.com")
    link = _link(session, "ana@example.com")
    captured.locked = True
    session.commit()

    response = client.post(link)
    assert response.status_code == 403
    assert "managed by its organisation" in response.get_data(as_text=True)
    assert _user(session, "ana@example.com") is None


def test_lock_off_lets_anyone_of_the_domain_sign_up(client, session, account, captured):
    assert _sign_up(client, "ana@example.com").status_code == 200


def test_sign_ups_per_address_are_throttled(client, session, app):
    app.config["SIGNUP_MAX_PER_ADDRESS"] = 2
    assert _sign_up(client, "a@free.test").status_code == 200
    assert _sign_up(client, "b@free.test").status_code == 200
    response = _sign_up(client, "c@free.test")
    assert response.status_code == 429
    assert "Too many sign-ups from your address" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Signup)) == 2


def test_pending_is_false_for_a_wrong_passphrase(session, app):
    assert signup.pending(session, "nobody@free.test", NEW, utcnow()) is False


def test_an_address_that_got_an_account_meanwhile_is_sent_to_sign_in(client, session):
    _sign_up(client, "kim@free.test")
    link = _link(session, "kim@free.test")
    factories.make_user(session, email="kim@free.test")  # e.g. provisioned by an IdP

    response = client.post(link)

    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert session.scalar(select(func.count()).select_from(User)) == 1
    assert client.post(link).status_code == 410


def test_joining_twice_takes_one_seat(session, account, owner, captured):
    from blueprints.domains import capture

    person = factories.make_user(session, email="ana@example.com")
    used = session.get(Account, account.id).seats_used
    first = capture.join(session, account, person, "sso", utcnow())
    second = capture.join(session, account, person, "signup", utcnow())
    session.commit()

    assert first.id == second.id
    session.expire_all()
    assert session.get(Account, account.id).seats_used == used + 1
    assert len(_events(session, "domain.capture_joined")) == 1
