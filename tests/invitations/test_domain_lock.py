"""Domain lock and invitations (SPEC F13): an account inviting a person whose domain
another account verified and locked is refused ("… is managed by another organisation"),
whatever its invite controls; with the lock off, or for the locking account itself, the
invitation goes as before."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from blueprints.domains import policy
from blueprints.invitations import services
from models import Membership, utcnow
from tests import factories
from tests.members.conftest import membership_of

MANAGED = "locked.test is managed by another organisation."


@pytest.fixture
def owner_member(session, account, owner):
    return membership_of(session, owner, account)


@pytest.fixture
def locker(session):
    other = factories.make_account(session, name="Locker Inc")
    factories.make_user(session, other, "boss@locked.test", role="owner")
    domain = factories.make_domain(session, other, "locked.test", verified=True, locked=True)
    return other, domain


def _invite(session, account_id, actor, emails):
    result = services.invite(session, account_id, actor, emails, utcnow(), "127.0.0.1")
    session.commit()
    return result


def _invited(session, account_id) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, Membership.user_id.is_(None))
    )


def test_invitation_to_a_domain_locked_elsewhere_is_refused(session, account, owner_member, locker):
    result = _invite(session, account.id, owner_member, ["kim@Locked.test", "ana@free.test"])

    assert result.refused == [("kim@Locked.test", MANAGED)]
    assert result.invited == ["ana@free.test"]
    assert _invited(session, account.id) == 1
    assert not policy.may_invite(session, account.id, "kim@locked.test")
    assert policy.may_invite(session, account.id, "kim@locked.test").reason == MANAGED


def test_lock_off_lets_the_invitation_go(session, account, owner_member, locker):
    _other, domain = locker
    domain.locked = False
    session.commit()

    assert _invite(session, account.id, owner_member, ["kim@locked.test"]).invited == [
        "kim@locked.test"
    ]


def test_the_locking_account_invites_its_own_people(session, locker):
    other, _domain = locker
    boss = session.scalar(select(Membership).where(Membership.account_id == other.id))

    assert _invite(session, other.id, boss, ["kim@locked.test"]).invited == ["kim@locked.test"]
    assert policy.may_join_elsewhere(session, other.id, "kim@locked.test")


def test_a_lock_on_a_domain_no_longer_verified_counts_for_nothing(
    session, account, owner_member, locker
):
    _other, domain = locker
    domain.status = "failed"
    session.commit()

    assert policy.may_invite(session, account.id, "kim@locked.test")


def test_an_invitation_sent_before_the_lock_no_longer_opens(
    client, session, account, owner_member, locker
):
    _other, domain = locker
    domain.locked = False
    session.commit()
    _invite(session, account.id, owner_member, ["kim@locked.test"])
    from models import OutboxEmail

    mail = session.scalar(select(OutboxEmail).where(OutboxEmail.to_addr == "kim@locked.test"))
    path = "/invitations/" + mail.body_text.split("/invitations/", 1)[1].split()[0]
    assert client.get(path).status_code == 200
    domain.locked = True
    session.commit()

    response = client.get(path)

    assert response.status_code == 403
    assert MANAGED in response.get_data(as_text=True)
