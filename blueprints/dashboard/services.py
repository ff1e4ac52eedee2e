"""Figures for the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from models import Account, Domain, Membership, SsoConnection


@dataclass
class AccountSummary:
    members: int
    seats_used: int
    seat_limit: int
    domains_verified: int
    domains_total: int
    domains_lost: int
    sso: str  # "off", "saml" or "oidc"


def account_summary(session, account: Account) -> AccountSummary:
    """Member, seat and domain counts and the SSO state of one account."""
    members, seats = session.execute(
        select(
            func.count(Membership.id),
            func.count(Membership.id).filter(Membership.active, Membership.licensed),
        ).where(Membership.account_id == account.id)
    ).one()
    total, verified, lost = session.execute(
        select(
            func.count(Domain.id),
            func.count(Domain.id).filter(Domain.status == "verified"),
            func.count(Domain.id).filter(Domain.lost_since.is_not(None)),
        ).where(Domain.account_id == account.id)
    ).one()
    sso = session.scalar(
        select(SsoConnection.protocol).where(
            SsoConnection.account_id == account.id, SsoConnection.enabled
        )
    )
    return AccountSummary(members, seats, account.seat_limit, verified, total, lost, sso or "off")
