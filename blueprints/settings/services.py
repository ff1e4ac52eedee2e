"""Account settings (SPEC F13): plain functions of an explicit session; never commit."""

from __future__ import annotations

from datetime import datetime

from blueprints.common import audit
from blueprints.domains import policy
from models import Account, User


class SettingsError(ValueError):
    """A value the owner typed that we can't accept; `field` is where the form shows it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def change_invite_controls(
    session,
    account: Account,
    actor: User,
    chosen: str | None,
    raw_domains: str | None,
    now: datetime,
    remote_addr: str | None = None,
) -> bool:
    """Who may be invited from now on (blueprints/domains/policy.py): "any" domain,
    "verified" domains only, or the "list" typed in `raw_domains` (commas, spaces or lines
    between them; normalised, at most policy.MAX_DOMAINS). The list is kept whatever the
    choice, so switching back restores it. Invitations already sent stay. Returns whether
    anything changed (an unchanged form is no event); a bad value is SettingsError on its
    field, nothing changed."""
    if chosen not in policy.POLICIES:
        raise SettingsError("policy", "Choose who may be invited.")
    domains, problems = policy.parse_domains(raw_domains)
    if problems:
        raise SettingsError("domains", " ".join(problems))
    if chosen == "list" and not domains:
        raise SettingsError("domains", "List at least one domain, like example.com.")
    before = {"policy": account.invite_policy, "domains": (account.invite_domains or "").split()}
    after = {"policy": chosen, "domains": domains}
    if before == after:
        return False
    account.invite_policy, account.invite_domains = chosen, "\n".join(domains) or None
    audit.record(
        session,
        "account.invite_controls_changed",
        account_id=account.id,
        actor_user_id=actor.id,
        target="Invite controls",
        detail={"before": before, "after": after},
        remote_addr=remote_addr,
    )
    return True


def set_scim_only(
    session, account: Account, actor: User, on: bool, remote_addr: str | None = None
) -> bool:
    """Turn "SCIM only" on or off (SPEC F13): while on, domain capture and SSO just-in-time
    membership are off and only the IdP creates members (blueprints/domains/policy.py
    reads it; the domains' capture switches keep their state for when it goes off).
    Audited; returns whether it changed."""
    if account.scim_only == on:
        return False
    account.scim_only = on
    audit.record(
        session,
        "account.scim_only_changed",
        account_id=account.id,
        actor_user_id=actor.id,
        target="SCIM only",
        detail={"on": on},
        remote_addr=remote_addr,
    )
    return True
