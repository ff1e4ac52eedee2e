"""Members page fixtures: an owner signed in, members built in bulk, SCIM members and
teams, and a second account for the tenant-isolation checks."""

from __future__ import annotations

import re
import secrets
from uuid import uuid4

import pytest
from sqlalchemy import select

from blueprints.auth.services import email_key
from blueprints.scim_settings import connector as scim_connector
from models import Membership, ScimConnector, SsoConnection, Team, TeamMember, User, utcnow
from tests import factories

MEMBERS = "/enterprise/members"
ACTIONS = ("deactivate", "reactivate", "remove", "make-co-owner", "revoke-co-owner")
EMAIL_CELL = re.compile(r'<td class="member-email">([^<]+)')


def listed(html: str) -> list[str]:
    """The emails in the members table, in the order shown."""
    return EMAIL_CELL.findall(html)


def membership_of(session, user: User, account) -> Membership:
    session.expire_all()
    return session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.account_id == account.id)
    )


def member(session, account, email: str, **kwargs) -> User:
    """A manual member who does not sign in in this test (no passphrase: no hashing)."""
    kwargs.setdefault("passphrase", None)
    return factories.make_user(session, account=account, email=email, **kwargs)


def many_members(session, account, count: int, prefix: str = "m") -> None:
    """`count` active manual members m000@example.com … in one commit."""
    for i in range(count):
        email = f"{prefix}{i:03d}@example.com"
        user = User(email=email, email_key=email_key(email), session_generation=1)
        session.add(user)
        session.flush()
        session.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                email=email,
                role="member",
                source="manual",
                active=True,
                licensed=True,
            )
        )
    account.seats_used += count
    session.commit()


def scim_member(session, account, email: str, display_name: str | None = None) -> Membership:
    """A member an IdP provisioned (source scim), holding a seat."""
    user = User(email=email, email_key=email_key(email), session_generation=1)
    session.add(user)
    session.flush()
    membership = Membership(
        account_id=account.id,
        user_id=user.id,
        scim_id=str(uuid4()),
        source="scim",
        user_name=email,
        user_name_key=email.lower(),
        email=email,
        display_name=display_name,
        active=True,
        licensed=True,
    )
    session.add(membership)
    account.seats_used += 1
    session.commit()
    return membership


def invited_member(session, account, email: str) -> Membership:
    """A SCIM member outside the verified domains, invited and not joined yet."""
    membership = Membership(
        account_id=account.id,
        scim_id=str(uuid4()),
        source="scim",
        user_name=email,
        user_name_key=email.lower(),
        email=email,
        active=True,
        licensed=True,
        invitation_token_hash=secrets.token_hex(32),
        invited_at=utcnow(),
    )
    session.add(membership)
    account.seats_used += 1
    session.commit()
    return membership


def make_team(session, account, name: str, members=(), source: str = "scim") -> Team:
    team = Team(
        scim_id=str(uuid4()),
        account_id=account.id,
        display_name=name,
        display_name_key=name.lower(),
        source=source,
    )
    session.add(team)
    session.flush()
    for m in members:
        session.add(TeamMember(team_id=team.id, membership_id=m.id))
    session.commit()
    return team


def enable_scim(session, account, owner_user) -> ScimConnector:
    """SCIM on as the SCIM page does it: a verified domain, SSO on, then the connector."""
    factories.make_domain(session, account, "example.com", verified=True)
    session.add(
        SsoConnection(
            account_id=account.id,
            public_id=f"sso-{secrets.token_hex(4)}",
            protocol="oidc",
            enabled=True,
            test_ok=True,
        )
    )
    session.commit()
    return scim_connector.enable(session, account.id, owner_user, "okta", "90", utcnow()).connector


def disable_scim(session, account, owner_user) -> None:
    connector = scim_connector.get_connector(session, account.id)
    scim_connector.disable(session, connector, owner_user, utcnow())
    session.commit()


def sign_in(client, user, passphrase: str = factories.PASSPHRASE) -> None:
    response = client.post("/login", data={"email": user.email, "passphrase": passphrase})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


@pytest.fixture
def other_account(session):
    """Another company with its own owner (owner@example.org) and one member."""
    other = factories.make_account(session, name="Other Inc")
    other_owner = factories.make_user(session, other, "owner@example.org", role="owner")
    member(session, other, "stranger@example.org")
    return other, other_owner
