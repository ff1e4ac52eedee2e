"""Accepting an invitation the IdP caused (SPEC F5 "Matching by email, safely").

A SCIM user whose email is outside the account's verified domains is "invited": the
membership exists (the IdP sees its user) but nobody is linked to it, so it grants
nothing, until the person who controls that mailbox accepts from the emailed link. The
link is single-use; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from blueprints.auth.services import email_key
from blueprints.common import audit, seats
from models import Membership, User


def find(session, token: str) -> Membership | None:
    """The pending invitation `token` opens, or None (unknown, already used, or its
    membership deleted by the IdP and only suspended: SPEC F12, it opens again if the
    IdP restores the user)."""
    if not token or len(token) > 100:
        return None
    return session.scalar(
        select(Membership).where(
            Membership.invitation_token_hash == hashlib.sha256(token.encode()).hexdigest(),
            Membership.source != "suspended",
        )
    )


def is_for(member: Membership, user: User) -> bool:
    return member.email is not None and email_key(member.email) == user.email_key


def accept(session, member: Membership, user: User, remote_addr: str | None) -> None:
    """Link `user` to the invited membership. Someone who already was a member of the
    account by hand keeps their role, and the IdP's membership takes that one's place."""
    previous = session.scalar(
        select(Membership).where(
            Membership.account_id == member.account_id, Membership.user_id == user.id
        )
    )
    if previous is not None and previous.id != member.id:
        member.role = previous.role
        seats.release(session, previous)
        session.delete(previous)
        session.flush()
    member.user = user
    member.invitation_token_hash = None
    audit.record(
        session,
        "membership.invitation_accepted",
        account_id=member.account_id,
        actor_user_id=user.id,
        target=member.scim_id,
        remote_addr=remote_addr,
    )
