"""Manual invitations (SPEC F13): `invitations.services.invite`, without HTTP. Each
invite controls setting; refused and invalid addresses change nothing; an invitation holds
a seat, as a SCIM invitation does."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from blueprints.invitations import services
from models import Account, AuditEvent, Membership, OutboxEmail, utcnow
from tests import factories
from tests.members.conftest import invited_member, membership_of


@pytest.fixture
def owner_member(session, account, owner):
    factories.make_domain(session, account, "example.com", verified=True)
    return membership_of(session, owner, account)


def _controls(session, account, policy: str, domains: str | None = None) -> None:
    account.invite_policy, account.invite_domains = policy, domains
    session.commit()


def _invite(session, account, actor, emails):
    result = services.invite(session, account.id, actor, emails, utcnow(), "127.0.0.1")
    session.commit()
    return result


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_invite_any_domain_by_default(session, account, owner_member):
    result = _invite(session, account, owner_member, ["kim@elsewhere.test", "ana@example.com"])

    assert result.invited == ["kim@elsewhere.test", "ana@example.com"]
    invited = session.scalars(
        select(Membership).where(Membership.invitation_token_hash.is_not(None))
    ).all()
    assert {(m.email, m.source, m.status, m.user_id) for m in invited} == {
        ("kim@elsewhere.test", "manual", "invited", None),
        ("ana@example.com", "manual", "invited", None),
    }
    assert all(m.invited_at is not None and m.licensed for m in invited)
    assert session.get(Account, account.id).seats_used == 3  # the owner's and two invitations
    mails = session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [m.to_addr for m in mails] == ["kim@elsewhere.test", "ana@example.com"]
    assert "owner@example.com invited you to join Example Inc" in mails[0].body_text
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "membership.invited")
    ).all()
    assert sorted(e.target for e in events) == ["ana@example.com", "kim@elsewhere.test"]
    assert all(e.actor_user_id == owner_member.user_id for e in events)


def test_verified_only_refuses_other_domains_and_changes_nothing(session, account, owner_member):
    _controls(session, account, "verified")

    result = _invite(session, account, owner_member, ["kim@elsewhere.test", "ana@Example.com"])

    assert result.invited == ["ana@Example.com"]
    ((email, reason),) = result.refused
    assert email == "kim@elsewhere.test"
    assert reason == (
        "Invitations to elsewhere.test are not allowed by this account's invite controls; "
        "add the domain to the list or verify it."
    )
    assert _count(session, Membership, Membership.email == "kim@elsewhere.test") == 0
    assert _count(session, OutboxEmail, OutboxEmail.to_addr == "kim@elsewhere.test") == 0
    assert session.get(Account, account.id).seats_used == 2


def test_custom_list_allows_listed_and_verified_domains(session, account, owner_member):
    _controls(session, account, "list", "partner.test\nxn--bcher-kva.example")

    result = _invite(
        session,
        account,
        owner_member,
        ["a@partner.test", "b@bücher.example", "c@example.com", "d@elsewhere.test"],
    )

    assert result.invited == ["a@partner.test", "b@bücher.example", "c@example.com"]
    assert [email for email, _ in result.refused] == ["d@elsewhere.test"]


def test_already_members_and_invited_people_are_not_invited_twice(session, account, owner_member):
    factories.make_user(session, account=account, email="lee@example.com")
    invited_member(session, account, "kim@elsewhere.test")

    result = _invite(
        session,
        account,
        owner_member,
        ["LEE@example.com", "Kim@elsewhere.test", "new@example.com", "new@EXAMPLE.com"],
    )

    assert result.invited == ["new@example.com"]
    assert result.already_members == ["LEE@example.com", "Kim@elsewhere.test"]
    assert _count(session, OutboxEmail) == 1


def test_invalid_addresses_are_reported_and_skipped(session, account, owner_member):
    result = _invite(session, account, owner_member, ["not-an-email", "a@b", "ok@example.com"])

    assert result.invalid == ["not-an-email", "a@b"]
    assert result.invited == ["ok@example.com"]


def test_no_seat_left_refuses_the_invitation(session, account, owner_member):
    account.seat_limit = 2
    session.commit()

    result = _invite(session, account, owner_member, ["a@example.com", "b@example.com"])

    assert result.invited == ["a@example.com"]
    assert result.refused == [("b@example.com", services.NO_SEAT)]
    assert _count(session, Membership, Membership.email == "b@example.com") == 0


def test_too_many_addresses_at_once(session, account, owner_member):
    with pytest.raises(ValueError):
        services.invite(
            session, account.id, owner_member, [f"p{i}@example.com" for i in range(101)], utcnow()
        )


def test_split_emails():
    assert services.split_emails(" a@x.test, b@x.test;c@x.test\n\nd@x.test\te@x.test ") == [
        "a@x.test",
        "b@x.test",
        "c@x.test",
        "d@x.test",
        "e@x.test",
    ]
