"""Who speaks for an account: its active owners and co-owners (SPEC F1)."""

from __future__ import annotations

from sqlalchemy import select

from models import Membership, User

ADMIN_ROLES = ("owner", "co-owner")


def admin_contacts(session, account_id: int) -> list[tuple[int, str]]:
    """(user id, email) of the account's active owners and co-owners, in id order: the
    people warnings and security notices go to."""
    return [
        (user_id, email)
        for user_id, email in session.execute(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(
                Membership.account_id == account_id,
                Membership.active.is_(True),
                Membership.role.in_(ADMIN_ROLES),
            )
            .order_by(User.id)
        )
    ]
