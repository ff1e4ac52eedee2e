"""Who may join an account, decided in one place (SPEC F13 "Domain controls", issue 20).

Plain functions of an explicit session that return a `Decision` (allowed, or refused with
a reason a person can act on); they read, never write. Every way into an account asks
here rather than deciding for itself:

- `may_invite`: the account's **invite controls** (`Account.invite_policy`): invitations
  may go to any domain (the default, the behaviour before the controls), to the account's
  verified domains only, or to a custom list of domains (`Account.invite_domains`). Used
  by manual invitations (blueprints/invitations/services.py) and by SCIM, for a user
  outside the verified domains, who is invited (blueprints/scim_api/provisioning.py).

The domain capture and domain lock decisions of the same issue (self sign-up, SSO
just-in-time membership, "SCIM only") belong beside it, as functions of the person's
email, the domain and the account returning a `Decision` the same way (e.g.
`may_sign_up`, `may_join_by_sso`); domain lock will also be consulted by `may_invite`
for a domain another account has locked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from blueprints.common.sql import execute
from blueprints.domains.services import DomainError, display_name, email_domain, normalise
from models import Account, Domain

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
    """May `email` be invited to the account (SPEC F13 invite controls)? `verified`, when
    the caller knows already whether the email's domain is one of the account's verified
    domains (a SCIM create does), saves the read."""
    domain = email_domain(email)
    controls = invite_controls(session, account_id)
    if controls.policy == "any":
        return ALLOWED
    if verified is None:
        found = execute(session, _IS_VERIFIED, {"account_id": account_id, "name": domain})
        verified = found.first() is not None
    return decide_invite(controls, domain, verified)


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
