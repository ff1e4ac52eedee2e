"""Who speaks for an account: its active owners and co-owners (SPEC F1)."""

from __future__ import annotations

from sqlalchemy import select, update

from models import Membership, Team, TeamMember, User

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


def other_active_owner(session, member: Membership) -> bool:
    """Whether the account keeps an active owner without `member` (SPEC F6: there is
    always one); checked before an owner is deactivated or removed, here or by the IdP."""
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.account_id == member.account_id,
                Membership.role == "owner",
                Membership.active.is_(True),
                Membership.id != member.id,
            )
        )
        is not None
    )


def end_sessions(member: Membership) -> None:
    """Sign the member's person out everywhere (deactivation, removal)."""
    if member.user is not None:
        member.user.session_generation = User.session_generation + 1


def bump_teams_of(session, membership_id: int) -> None:
    """A member is leaving: the ETag of every team they are in changes (SCIM DELETE, or
    removal on the Members page; their team rows go with the membership)."""
    session.execute(
        update(Team)
        .where(
            Team.id.in_(select(TeamMember.team_id).where(TeamMember.membership_id == membership_id))
        )
        .values(version=Team.version + 1)
        .execution_options(synchronize_session=False)
    )
