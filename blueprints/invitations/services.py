"""Invitations (SPEC F5 "Matching by email, safely", F13 invite controls).

Two things make one: a SCIM user whose email is outside the account's verified domains
(blueprints/scim_api/provisioning.py), and an owner or co-owner inviting people by email
on the Members page (`invite`, source "manual"). Either way the membership is "invited":
it exists but nobody is linked to it, so it grants nothing, until the person who controls
that mailbox accepts from the emailed link. The link is single-use; only its SHA-256 is
stored. Like a SCIM invitation, an invited membership is active and holds a seat from the
start (a SCIM user is provisioned active), so accepting never fails for lack of seats.
Who may be invited is the invite controls' decision (blueprints/domains/policy.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from blueprints.auth.services import email_key
from blueprints.common import audit, outbox, seats
from blueprints.common.urls import absolute_url
from blueprints.domains import policy
from blueprints.domains.services import email_domain
from models import Account, Membership, User

MAX_INVITES = 100  # addresses in one invitation request
MAX_EMAIL = 320  # characters: RFC 5321's 64 + "@" + 255, and the size of user.email
EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")
SEPARATORS = re.compile(r"[\s,;]+")
NO_SEAT = (
    "Licence limit reached: every seat of this account is in use (an invitation holds "
    "one). Deactivate a member or raise the seat limit, then invite again."
)


@dataclass
class InviteResult:
    """What `invite` did with each address, in the order given (repeats counted once)."""

    invited: list[str] = field(default_factory=list)
    already_members: list[str] = field(default_factory=list)  # members, or invited already
    refused: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    invalid: list[str] = field(default_factory=list)


def split_emails(raw: str | None) -> list[str]:
    """The addresses typed in one box: commas, semicolons, spaces or lines between them."""
    return [part for part in SEPARATORS.split(raw or "") if part]


def valid_email(email: str) -> bool:
    return len(email) <= MAX_EMAIL and EMAIL.fullmatch(email) is not None


def _existing(session, account_id: int, keys: list[str]) -> set[str]:
    """Which of the email keys are members of the account already, or invited."""
    linked = session.scalars(
        select(User.email_key)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.account_id == account_id, User.email_key.in_(keys))
    )
    pending = session.scalars(
        select(func.lower(Membership.email)).where(
            Membership.account_id == account_id,
            Membership.user_id.is_(None),
            func.lower(Membership.email).in_(keys),
        )
    )
    return set(linked) | set(pending)


def invite(
    session,
    account_id: int,
    actor: Membership,
    emails: list[str],
    now: datetime,
    remote_addr: str | None = None,
) -> InviteResult:
    """Invite people by email (SPEC F13): each valid address that is not a member yet and
    that the invite controls allow gets an invited membership (source "manual", holding a
    seat), an invitation email through the outbox and a `membership.invited` audit event.
    Never commits; refused and invalid addresses change nothing."""
    if len(emails) > MAX_INVITES:
        raise ValueError(f"Invite at most {MAX_INVITES} people at a time.")
    result = InviteResult()
    wanted: dict[str, str] = {}
    for raw in emails:
        email = raw.strip()
        if not valid_email(email):
            result.invalid.append(email)
        else:
            wanted.setdefault(email_key(email), email)
    if not wanted:
        return result
    existing = _existing(session, account_id, list(wanted))
    controls = policy.invite_controls(session, account_id)
    verified = policy.verified_domains(session, account_id)
    # Domain lock (SPEC F13): one read for the batch, of the domains outside ours only.
    locked = policy.locked_elsewhere(
        session, account_id, {email_domain(e) for e in wanted.values()} - verified
    )
    account_name = session.get(Account, account_id).name
    inviter = (actor.user.display_name or actor.user.email) if actor.user else None
    for key, email in wanted.items():
        if key in existing:
            result.already_members.append(email)
            continue
        domain = email_domain(email)
        if domain in locked:
            result.refused.append((email, policy.managed_elsewhere(domain)))
            continue
        decision = policy.decide_invite(controls, domain, domain in verified)
        if not decision:
            result.refused.append((email, decision.reason))
            continue
        if not seats.take_for_new(session, account_id):
            result.refused.append((email, NO_SEAT))
            continue
        token, token_hash = invitation_token()
        member = Membership(
            account_id=account_id,
            source="manual",
            role="member",
            email=email,
            active=True,
            licensed=True,
            invitation_token_hash=token_hash,
            invited_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(member)
        outbox.add(
            session, outbox.message(**invitation(email, token, account_name, inviter), now=now)
        )
        audit.record(
            session,
            "membership.invited",
            account_id=account_id,
            actor_user_id=actor.user_id,
            target=email,
            detail={"email": email, "via": "manual"},
            remote_addr=remote_addr,
        )
        result.invited.append(email)
    session.flush()
    return result


def invitation_token() -> tuple[str, str]:
    """A new invitation token and the hash we keep of it (`find` looks it up by that)."""
    token = secrets.token_urlsafe(32)
    return token, _hash(token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation(email: str, token: str, account_name: str, inviter: str | None = None) -> dict:
    """The arguments of `outbox.message` for an invitation to join the account: from the
    IdP, or from `inviter` (a person, on the Members page)."""
    return {
        "to": email,
        "subject": f"You are invited to join {account_name}",
        "template": "invitation",
        "account_name": account_name,
        "inviter": inviter,
        "accept_url": absolute_url("invitations.accept", token=token),
    }


def find(session, token: str) -> Membership | None:
    """The pending invitation `token` opens, or None (unknown, already used, or its
    membership deleted by the IdP and only suspended: SPEC F12, it opens again if the
    IdP restores the user)."""
    if not token or len(token) > 100:
        return None
    return session.scalar(
        select(Membership).where(
            Membership.invitation_token_hash == _hash(token),
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
