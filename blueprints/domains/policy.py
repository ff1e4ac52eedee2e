"""Who may join an account, decided in one place (SPEC F13 "Domain controls", issue 20).

Plain functions of an explicit session that return a `Decision` (allowed, or refused with
a reason a person can act on); they read, never write. Every way into an account asks
here rather than deciding for itself:

- `may_invite`: the account's **invite controls** (`Account.invite_policy`): invitations
  may go to any domain (the default, the behaviour before the controls), to the account's
  verified domains only, or to a custom list of domains (`Account.invite_domains`). Used
  by manual invitations (blueprints/invitations/services.py) and by SCIM, for a user
  outside the verified domains, who is invited (blueprints/scim_api/provisioning.py).

- **Domain lock** (`Domain.locked`, on a verified domain): `may_join_elsewhere` refuses
  an account other than the domain's a person of that domain ("example.com is managed by
  another organisation"); `may_invite` asks it first, so manual invitations and SCIM
  creates outside the creating account's verified domains are refused the same way. A
  verified domain belongs to one account only (`services._verified_elsewhere` and the
  unique index `uq_domain_verified_name`), so an account's own verified domains are never
  locked by another: a SCIM create inside them reads nothing more. `may_sign_up` refuses
  a self sign-up in a locked domain unless the locking account has invited the person.
- **Domain capture** (`Domain.capture`): `capturing_account` is the account a person of
  the domain joins on signing up or signing in with SSO (`may_join_by_sso`), unless the
  account is **SCIM only** (`Account.scim_only`: only the IdP creates members). Joining
  itself (seat, refusal, owners' daily email) is blueprints/domains/capture.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select

from blueprints.common.sql import execute
from blueprints.domains.services import DomainError, display_name, email_domain, normalise
from models import Account, Domain, Membership

POLICIES = ("any", "verified", "list")
LABELS = {
    "any": "Any domain",
    "verified": "Verified domains only",
    "list": "Only the domains listed",
}
MAX_DOMAINS = 100  # domains in a custom list
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class Decision:
    """Whether someone may join; `reason` says why not (shown to people and to IdPs)."""

    allowed: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)


@dataclass(frozen=True)
class InviteControls:
    """An account's invite controls: the policy and, for "list", the domains (stored form:
    IDNA, lower case)."""

    policy: str = "any"
    domains: tuple[str, ...] = ()

    @classmethod
    def of(cls, policy: str | None, domains: str | None) -> InviteControls:
        return cls(policy or "any", tuple((domains or "").split()))


_ACCOUNTS = Account.__table__
_CONTROLS = select(_ACCOUNTS.c.invite_policy, _ACCOUNTS.c.invite_domains).where(
    _ACCOUNTS.c.id == bindparam("account_id")
)
_DOMAINS = Domain.__table__
_IS_VERIFIED = select(_DOMAINS.c.id).where(
    _DOMAINS.c.account_id == bindparam("account_id"),
    _DOMAINS.c.status == "verified",
    _DOMAINS.c.name == bindparam("name"),
)
_ALL_VERIFIED = select(_DOMAINS.c.name).where(
    _DOMAINS.c.account_id == bindparam("account_id"), _DOMAINS.c.status == "verified"
)


def invite_controls(session, account_id: int) -> InviteControls:
    """The account's invite controls (one Core read)."""
    row = execute(session, _CONTROLS, {"account_id": account_id}).first()
    return InviteControls.of(row.invite_policy, row.invite_domains) if row else InviteControls()


def verified_domains(session, account_id: int) -> frozenset[str]:
    """The account's verified domain names (stored form)."""
    return frozenset(execute(session, _ALL_VERIFIED, {"account_id": account_id}).scalars())


def refusal(domain: str) -> str:
    """Why an invitation to `domain` (stored form) is refused by the invite controls."""
    return (
        f"Invitations to {display_name(domain)} are not allowed by this account's invite "
        "controls; add the domain to the list or verify it."
    )


def decide_invite(controls: InviteControls, domain: str, verified: bool) -> Decision:
    """The invite controls' answer for an email of `domain` (stored form), `verified`
    saying whether it is one of the account's verified domains. Pure: callers that decide
    for many emails read the controls and the verified domains once."""
    if controls.policy == "any" or verified:
        return ALLOWED
    if controls.policy == "list" and domain in controls.domains:
        return ALLOWED
    return Decision(False, refusal(domain))


def may_invite(session, account_id: int, email: str, *, verified: bool | None = None) -> Decision:
    """May `email` be invited to the account (SPEC F13: domain lock, then the invite
    controls)? `verified`, when
    the caller knows already whether the email's domain is one of the account's verified
    domains (a SCIM create does), saves the read."""
    domain = email_domain(email)
    if verified is not True:  # an account's own verified domain is never locked by another
        locker = locked_by(session, domain)
        if locker is not None and locker != account_id:
            return Decision(False, managed_elsewhere(domain))
    controls = invite_controls(session, account_id)
    if controls.policy == "any":
        return ALLOWED
    if verified is None:
        found = execute(session, _IS_VERIFIED, {"account_id": account_id, "name": domain})
        verified = found.first() is not None
    return decide_invite(controls, domain, verified)


# --- domain lock and domain capture -----------------------------------------------------

_LOCKER = select(_DOMAINS.c.account_id).where(
    _DOMAINS.c.name == bindparam("name"),
    _DOMAINS.c.status == "verified",
    _DOMAINS.c.locked.is_(True),
)


def locked_by(session, domain: str) -> int | None:
    """The account that locked `domain` (stored form), if one did (one index probe: a
    verified name is unique)."""
    return execute(session, _LOCKER, {"name": domain}).scalar()


def managed_elsewhere(domain: str) -> str:
    return f"{display_name(domain)} is managed by another organisation."


def may_join_elsewhere(session, account_id: int, email: str) -> Decision:
    """May a person of `email`'s domain be a member of `account_id`? Refused only when
    another account verified and locked the domain (domain lock, SPEC F13)."""
    domain = email_domain(email)
    locker = locked_by(session, domain)
    if locker is None or locker == account_id:
        return ALLOWED
    return Decision(False, managed_elsewhere(domain))


def locked_elsewhere(session, account_id: int, domains: set[str]) -> set[str]:
    """Which of `domains` (stored form) another account locked (one read for a batch)."""
    if not domains:
        return set()
    return set(
        session.scalars(
            select(Domain.name).where(
                Domain.name.in_(sorted(domains)),
                Domain.status == "verified",
                Domain.locked.is_(True),
                Domain.account_id != account_id,
            )
        )
    )


def _invited_by(session, account_id: int, email: str) -> bool:
    """Whether the account has a pending invitation for `email` (any case)."""
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.account_id == account_id,
                Membership.user_id.is_(None),
                Membership.invitation_token_hash.is_not(None),
                func.lower(Membership.email) == email.strip().lower(),
            )
        )
        is not None
    )


def may_sign_up(session, email: str) -> Decision:
    """May `email` sign up here (SPEC F13)? Refused when its domain is locked by an
    account, unless that account has invited the person."""
    domain = email_domain(email)
    locker = locked_by(session, domain)
    if locker is None or _invited_by(session, locker, email):
        return ALLOWED
    return Decision(
        False,
        f"{display_name(domain)} is managed by its organisation: people of this domain "
        "join through an invitation from its owners. Ask them to invite you.",
    )


def capturing_account(session, email: str) -> Account | None:
    """The account whose verified domain captures `email` (capture on, the account not
    SCIM only), or None."""
    return session.scalar(
        select(Account)
        .join(Domain, Domain.account_id == Account.id)
        .where(
            Domain.name == email_domain(email),
            Domain.status == "verified",
            Domain.capture.is_(True),
            Account.scim_only.is_(False),
        )
    )


def scim_only_refusal(account_name: str, email: str) -> str:
    return (
        f"There is no account for {email}. Members of {account_name} come from its "
        "identity provider's provisioning (SCIM): ask your administrator to assign you "
        "the application."
    )


def may_join_by_sso(session, account: Account, email: str) -> Decision:
    """May an SSO sign-in of an unknown person of `email` create their membership in
    `account` just in time (SPEC F13)? Only when the email's domain is one of the
    account's captured domains and the account is not SCIM only."""
    if account.scim_only:
        return Decision(False, scim_only_refusal(account.name, email))
    captured = capturing_account(session, email)
    if captured is None or captured.id != account.id:
        return Decision(False, f"There is no account for {email}. Ask your administrator.")
    return ALLOWED


def parse_domains(raw: str | None) -> tuple[list[str], list[str]]:
    """The domains an owner typed for the custom list (commas, spaces or lines between
    them), normalised (IDNA, lower case) and without repeats, and the problems found (one
    message per bad entry, or too many)."""
    seen: dict[str, None] = {}
    problems: list[str] = []
    for entry in _SEPARATORS.split(raw or ""):
        if not entry:
            continue
        try:
            seen[normalise(entry.removeprefix("@"))] = None
        except DomainError as error:
            problems.append(str(error))
    if len(seen) > MAX_DOMAINS:
        problems.append(f"List at most {MAX_DOMAINS} domains (this list has {len(seen)}).")
    return list(seen), problems
