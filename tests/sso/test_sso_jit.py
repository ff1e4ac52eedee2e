"""Just-in-time membership through SSO (SPEC F13), with a real OpenID Connect provider:
an unknown person of a captured domain who signs in with SSO becomes a member holding a
seat; capture off, or the account "SCIM only", refuses as before (SCIM only says members
come from the IdP's provisioning); no seat left: a clear refusal and one email a day to
the owners."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Account, AuditEvent, Domain, Membership, OutboxEmail, User
from tests import factories
from tests.sso.pages import section
from tests.sso.pages import text as page_text
from tests.sso.test_sso_sign_in import (  # noqa: F401 (sso_on: a fixture)
    _signed_in_as,
    _through_idp,
    _users,
    sso_on,
)

pytestmark = pytest.mark.usefixtures("sso_on")


def _capture(session, account, on: bool = True) -> None:
    session.expire_all()
    [domain] = session.scalars(select(Domain).where(Domain.account_id == account.id)).all()
    domain.capture = on
    session.commit()


def _member(session, account, email: str) -> Membership | None:
    session.expire_all()
    return session.scalar(
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account.id, User.email_key == email)
    )


def _events(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_captured_domain_makes_the_person_a_member_just_in_time(
    client, session, account, iam_server, idp_user
):
    _capture(session, account)
    idp_user("newcomer@example.com")
    seats = session.get(Account, account.id).seats_used

    response = _through_idp(client, iam_server, "newcomer@example.com")

    assert response.status_code == 303
    assert _signed_in_as(client) == "newcomer@example.com"
    member = _member(session, account, "newcomer@example.com")
    assert (member.role, member.active, member.licensed) == ("member", True, True)
    assert member.user.passphrase_hash is None  # SSO only, until they choose one
    assert session.get(Account, account.id).seats_used == seats + 1
    [joined] = _events(session, "domain.capture_joined")
    assert (joined.target, joined.detail) == ("newcomer@example.com", {"via": "sso"})
    assert len(_events(session, "user.sso_sign_in")) == 1


def test_a_known_person_without_membership_joins_too(
    client, session, account, iam_server, idp_user
):
    _capture(session, account)
    factories.make_user(session, email="signedup@example.com")  # e.g. signed up before capture
    idp_user("signedup@example.com")

    assert _through_idp(client, iam_server, "signedup@example.com").status_code == 303
    assert _member(session, account, "signedup@example.com").licensed


def test_capture_off_refuses_as_before(client, session, account, iam_server, idp_user):
    _capture(session, account, on=False)
    idp_user("newcomer@example.com")
    before = _users(session)

    response = _through_idp(client, iam_server, "newcomer@example.com")

    assert response.status_code == 403
    assert section(page_text(response), "sso-error") == (
        "There is no account for newcomer@example.com. Ask your administrator."
    )
    assert _users(session) == before


def test_scim_only_turns_just_in_time_off(client, session, account, iam_server, idp_user):
    _capture(session, account)
    account.scim_only = True
    session.commit()
    idp_user("newcomer@example.com")
    before = _users(session)

    response = _through_idp(client, iam_server, "newcomer@example.com")

    assert response.status_code == 403
    message = section(page_text(response), "sso-error")
    assert message.startswith("There is no account for newcomer@example.com.")
    assert "come from its identity provider's provisioning (SCIM)" in message
    assert _users(session) == before
    assert _events(session, "domain.capture_joined") == []


def test_no_seat_left_refuses_and_tells_the_owners_once_a_day(
    client, session, account, owner, iam_server, idp_user
):
    _capture(session, account)
    account.seat_limit = session.get(Account, account.id).seats_used
    session.commit()

    for email in ("ana@example.com", "bob@example.com"):
        idp_user(email)
        response = _through_idp(client, iam_server, email)
        assert response.status_code == 403
        assert section(page_text(response), "sso-error") == (
            "Example Inc has no seat left; ask its owners."
        )
        assert _member(session, account, email) is None
        assert _signed_in_as(client) is None

    assert [e.target for e in _events(session, "domain.capture_refused")] == [
        "ana@example.com",
        "bob@example.com",
    ]
    mails = session.scalars(
        select(OutboxEmail).where(OutboxEmail.subject.contains("no seat left"))
    ).all()
    assert [m.to_addr for m in mails] == ["owner@example.com"]
    assert "ana@example.com" in mails[0].body_text
    assert session.scalar(select(func.count()).select_from(Membership)) == 1  # the owner
