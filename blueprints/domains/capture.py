"""Domain capture (SPEC F13): a person of a captured domain joins the account.

Whether a person is captured, and by which account, is `policy.capturing_account` (and
`policy.may_join_by_sso` for SSO); this is the joining itself, for self sign-up
(blueprints/auth/signup.py) and SSO just-in-time membership (blueprints/sso/services.py):
a member membership holding a seat, taken with the guarded seat counter
(blueprints/common/seats.py) so two people can't both take the last seat. With no seat
left the person is refused: an audit event (`domain.capture_refused`), and the account's
owners and co-owners get one email a day listing who was refused in the last 24 hours
(an outbox row per owner, deduplicated per account and day).

Plain functions of an explicit session; they flush, never commit. A refusal is written
although the caller answers with the refusal page (`unit_of_work.keep_on_error`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from blueprints.common import audit, outbox, seats
from blueprints.common.accounts import admin_contacts
from blueprints.common.urls import absolute_url
from models import Account, AuditEvent, Membership, User

REFUSALS_LISTED = 100  # people named in one daily email


def no_seat(account_name: str) -> str:
    """What a refused person is told."""
    return f"{account_name} has no seat left; ask its owners."


class _NoSeat(Exception):
    pass


def _membership(session, account_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
    )


def join(
    session,
    account: Account,
    user: User,
    via: str,
    now: datetime,
    remote_addr: str | None = None,
) -> Membership | None:
    """Make `user` a member of `account` holding a seat (`via`: "signup" or "sso"); None
    when no seat is left, the refusal recorded and the owners told (once a day)."""
    existing = _membership(session, account.id, user.id)
    if existing is not None:
        return existing
    member = Membership(
        account_id=account.id,
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role="member",
        source="manual",
        active=True,
        licensed=True,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():  # the seat and the row together, or neither
            if not seats.take_for_new(session, account.id):
                raise _NoSeat
            session.add(member)
            session.flush()
    except _NoSeat:
        refuse(session, account, user.email, via, now, remote_addr)
        return None
    except IntegrityError:  # the same person joined at the same moment (two tabs)
        return _membership(session, account.id, user.id)
    audit.record(
        session,
        "domain.capture_joined",
        account_id=account.id,
        actor_user_id=user.id,
        target=user.email,
        detail={"via": via},
        remote_addr=remote_addr,
    )
    session.flush()
    return member


def refuse(
    session,
    account: Account,
    email: str,
    via: str,
    now: datetime,
    remote_addr: str | None = None,
) -> None:
    """Record a person refused for lack of a seat and tell the owners, at most once a day
    each: the email lists the refusals of the last 24 hours (later ones of the same day
    are in the audit log, and in the next day's email)."""
    audit.record(
        session,
        "domain.capture_refused",
        account_id=account.id,
        target=email,
        detail={"via": via},
        remote_addr=remote_addr,
    )
    session.flush()
    since = now - timedelta(days=1)
    refused = list(
        session.scalars(
            select(AuditEvent.target)
            .where(
                AuditEvent.account_id == account.id,
                AuditEvent.action == "domain.capture_refused",
                AuditEvent.created_at >= since,
            )
            .order_by(AuditEvent.created_at, AuditEvent.id)
            .limit(REFUSALS_LISTED)
        )
    )
    if email not in refused:  # the event's created_at is the clock's; `now` may be a test's
        refused.append(email)
    day = now.date().isoformat()
    for user_id, to in admin_contacts(session, account.id):
        outbox.enqueue(
            session,
            to,
            f"People of your domain were refused: {account.name} has no seat left",
            "capture_refused",
            dedupe_key=f"capture-refused:{account.id}:{user_id}:{day}",
            now=now,
            account=account.name,
            refused=refused,
            seat_limit=account.seat_limit,
            link=absolute_url("members.index"),
        )
