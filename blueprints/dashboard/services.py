"""Figures for the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from blueprints.scim_settings import connector as scim
from models import Account, Domain, Membership, SsoConnection, utcnow


@dataclass
class ScimWarning:
    """The SCIM page's token warning, repeated on the dashboard (SPEC F4)."""

    reason: str
    days_left: int
    expired: bool
    token_name: str = ""


@dataclass
class AccountSummary:
    members: int
    seats_used: int
    seat_limit: int
    domains_verified: int
    domains_total: int
    domains_lost: int
    sso: str  # "off", "saml" or "oidc"
    scim_warning: ScimWarning | None = None


def scim_warning(session, account_id: int, now: datetime) -> ScimWarning | None:
    """The warning while the automatic refresh fails and the expiry is near, else None."""
    connector = scim.get_connector(session, account_id)
    token = scim.warning_token(connector, now)
    if token is None:
        return None
    state = scim.token_state(connector, token, now)
    return ScimWarning(
        token.refresh_failure_reason, state.days_left or 0, state.name == "expired", token.name
    )


def account_summary(session, account: Account, now: datetime | None = None) -> AccountSummary:
    """Member, seat and domain counts, the SSO state and any SCIM token warning."""
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
    return AccountSummary(
        members,
        seats,
        account.seat_limit,
        verified,
        total,
        lost,
        sso or "off",
        scim_warning(session, account.id, now or utcnow()),
    )
