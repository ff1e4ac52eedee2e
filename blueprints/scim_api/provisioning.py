"""What provisioning a member means beyond storing the resource (SPEC F5), with no Flask:
which email is the member's, who the member is matched to, seats, deactivation, and the
welcome and invitation emails (through the outbox, in the request's transaction).

Email and matching:
- the member's email is the primary email, else the work one, else the first, else the
  userName when it is an email address; a user without any is kept ("no email");
- in the account's verified domains the email joins the existing person (no new
  passphrase), or creates them with a welcome email whose initial passphrase is made and
  hashed by the outbox job, never on this request path;
- elsewhere nobody is joined silently: the membership is "invited" until the person
  accepts from the invitation email, if the account's invite controls allow that
  email's domain (SPEC F13, blueprints/domains/policy.py); otherwise the create or the
  email change is refused with a 403 and nothing is written (`check_invite`).

Licences: an active member holds a seat (blueprints.common.seats); deactivation or
deletion frees it and ends the member's sessions; no seat left is 403.

Deprovisioning policy (SPEC F12, the connector's `deprovision_mode`): under "remove" a
DELETE removes the membership at once; under "suspend" `active: false` and DELETE both
keep it, deactivated, until `removal_due_at` (the `remove-suspended-members` job removes
it then). A DELETE also takes it out of SCIM (`source = "suspended"`, its teams stashed):
RFC 7644 §3.6 "the service provider MUST return a 404 (Not Found) error for all
operations associated with the previously deleted resource". The IdP creating the same
user again inside the window restores it (`Match.restore_id`), under a new id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from scim2_models import ForbiddenException, InvalidValueException, UniquenessException
from sqlalchemy import bindparam, delete, insert, select, update

from blueprints.auth.services import email_key, find_user
from blueprints.common import outbox, seats
from blueprints.common.accounts import bump_teams_of, end_sessions, other_active_owner
from blueprints.common.sql import Bound, Prepared, execute
from blueprints.domains import policy as domain_policy
from blueprints.domains.services import email_domain
from blueprints.invitations.services import invitation, invitation_token
from blueprints.members import rules
from blueprints.scim_api.schemas import UserResource
from blueprints.scim_api.serialize import text
from models import (
    Account,
    AuditEvent,
    Domain,
    Membership,
    ScimConnector,
    Team,
    TeamMember,
    User,
)

EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL = 320  # characters: RFC 5321's 64 + "@" + 255, and the size of user.email
PERSON_NAME = 200  # characters of user.display_name


def member_email(resource: UserResource) -> str | None:
    """Primary, else work, else first email; else the userName if it is an email."""
    emails = [e for e in resource.emails or [] if e.value and e.value.strip()]
    chosen = (
        next((e for e in emails if e.primary), None)
        or next((e for e in emails if (e.type or "").lower() == "work"), None)
        or (emails[0] if emails else None)
    )
    if chosen is not None:
        # The person's address (user.email, the outbox) holds MAX_EMAIL characters, the
        # most an address can have; a longer one reached PostgreSQL and was a 500.
        if len(chosen.value.strip()) > MAX_EMAIL:
            raise InvalidValueException(
                detail=f"The member's email is longer than {MAX_EMAIL} characters, "
                "the most an email address can have."
            )
        return chosen.value.strip()
    user_name = (resource.user_name or "").strip()
    if EMAIL_LIKE.fullmatch(user_name) and len(user_name) <= MAX_EMAIL:
        return user_name  # a longer userName is kept, but it cannot be an address
    return None


def lookup_values(email: str | None) -> dict:
    """The parameters `users._BEFORE_CREATE` matches the email's person and domain with."""
    return {
        "domain": email_domain(email) if email is not None else None,
        "email_key": email_key(email) if email is not None else None,
    }


@dataclass(frozen=True)
class Match:
    """Who a new SCIM user is: `verified` when the email is in one of the account's
    verified domains; then `person_id` (the person with that email, if any) and
    `member_id` (their manual membership of the account, adopted rather than doubled)."""

    verified: bool
    person_id: int | None = None
    member_id: int | None = None
    # A membership the IdP deleted under the "suspend" policy, with this userName,
    # externalId or (verified) email: restored rather than created again.
    restore_id: int | None = None


def match_new(before, columns: dict, email: str | None) -> Match:
    """Decide a create from what it read (`before`: a row of `users._BEFORE_CREATE`):
    409 when the userName, the externalId or the email's person is taken by a SCIM user.
    userName first: a repeated create is a 409 about the userName. The unique constraints
    decide when two creates race past this check.

    A suspended membership (deleted by the IdP, still inside its window) that the
    userName, the externalId or the verified email names is restored; naming two
    different ones, or one while the email's person is another member here, is a 409
    (they hold those values, and restoring one would clash with the other)."""
    if before.user_name_taken:
        raise UniquenessException(detail=f"A user with userName {columns['user_name']!r} exists.")
    if before.external_id_taken:
        raise UniquenessException(
            detail=f"A user with externalId {columns['external_id']!r} exists."
        )
    verified = email is not None and before.domain_id is not None
    suspended = {before.suspended_by_key, before.suspended_by_external_id} - {None}
    person_here = before.member_id if verified and before.person_id is not None else None
    if person_here is not None and before.source == "suspended":
        suspended.add(person_here)
    if len(suspended) > 1:
        raise UniquenessException(
            detail="The userName, externalId and email name different users the IdP "
            "deleted recently; they can't all be restored as one."
        )
    if suspended:
        restore_id = suspended.pop()
        if person_here is not None and person_here != restore_id:
            raise UniquenessException(
                detail=f"The email {email} already belongs to another member of the account."
            )
        return Match(verified, restore_id=restore_id)
    if not verified or before.person_id is None:
        return Match(verified)
    if before.source == "scim":
        raise UniquenessException(
            detail=f"The email {email} already belongs to the user {before.user_name!r}."
        )
    return Match(True, before.person_id, before.member_id)


_VERIFIED = Prepared(
    select(Domain.__table__.c.id).where(
        Domain.__table__.c.account_id == bindparam("account_id"),
        Domain.__table__.c.status == "verified",
        Domain.__table__.c.name == bindparam("name"),
    )
)
_ACCOUNT_NAME = Prepared(
    select(Account.__table__.c.name).where(Account.__table__.c.id == bindparam("account_id"))
)


def account_name(session, account_id: int) -> str:
    """For the subject of a welcome or invitation email (a Core read: the ORM's lazy load
    of `connector.account` cost more than the rest of a create's reads)."""
    return execute(session, _ACCOUNT_NAME, {"account_id": account_id}).scalar_one()


def _verified(session, account_id: int, email: str) -> bool:
    found = execute(session, _VERIFIED, {"account_id": account_id, "name": email_domain(email)})
    return found.first() is not None


def check_invite(session, account_id: int, email: str) -> None:
    """An email outside the verified domains is invited only if the account's invite
    controls allow its domain (SPEC F13); else 403 (RFC 7644 §3.12: "The client does not
    have permission to perform the operation"), before anything is written. Asked only
    for an email outside the verified domains, so a create in them reads nothing more."""
    decision = domain_policy.may_invite(session, account_id, email, verified=False)
    if not decision:
        raise ForbiddenException(detail=decision.reason)


# --- Seats and deactivation -----------------------------------------------------------------


def licence_limit() -> ForbiddenException:
    return ForbiddenException(
        detail="Licence limit reached: every seat of this account is in use. "
        "Deactivate a member or raise the seat limit, then retry."
    )


def set_active(session, member: Membership, active: bool) -> None:
    """Activate (takes a seat, or 403) or deactivate (frees it, ends sessions). With team
    rules (SPEC F12), a ruled member activated gets the licence its rule says."""
    if active and member.role != "owner" and rules.has_rules(session, member.account_id):
        member.active = True
        session.flush()
        apply_rules(session, member.account_id, member.id)
        session.expire(member, ["role", "licensed"])
        return
    if active:
        if not seats.take(session, member):
            raise licence_limit()
        member.active = True
        return
    if member.active and member.role == "owner" and not other_active_owner(session, member):
        raise ForbiddenException(
            detail="This user is the account's only active owner; the IdP cannot "
            "deactivate or delete them. Make another member an owner first."
        )
    seats.release(session, member)
    if member.active:
        end_sessions(member)
    member.active = False


def roles_of(document: dict | None) -> list:
    """The `roles[].value`s of a user's document, as team rules read them (SPEC F12)."""
    roles = (document or {}).get("roles") or []
    return [r.get("value") for r in roles if isinstance(r, dict)]


def roles_changed(session, account_id: int, before: dict | None, after: dict | None) -> bool:
    """Whether a write changed the user's `roles` while the account has team rules (only
    then can it change their role or licence)."""
    return roles_of(before) != roles_of(after) and rules.has_rules(session, account_id)


def apply_rules(session, account_id: int, member_id: int) -> None:
    """The team rules for one user now, strictly: a licence they need and the seats can't
    cover refuses the request (the SCIM licence-limit 403, the caller rolls back)."""
    try:
        rules.apply(session, account_id, lambda m: m.id == member_id, strict=True)
    except rules.NoSeats:
        raise licence_limit() from None


# --- The deprovisioning policy (SPEC F12) ----------------------------------------------------

MODES = ("remove", "suspend")


@dataclass(frozen=True)
class Policy:
    """What `active: false` and DELETE do: "remove" (now) or "suspend" for `days`."""

    mode: str = "remove"
    days: int = 30

    @property
    def suspends(self) -> bool:
        return self.mode == "suspend"

    def due(self, now: datetime) -> datetime:
        return now + timedelta(days=self.days)


_CONNECTORS = ScimConnector.__table__
_POLICY = Prepared(
    select(_CONNECTORS.c.deprovision_mode, _CONNECTORS.c.suspend_days).where(
        _CONNECTORS.c.id == bindparam("connector_id")
    )
)


def policy(session, connector_id: int) -> Policy:
    """The connector's policy: read only when a member is deactivated or deleted (the
    request's `connector` is auth's `Caller`, which a create's hot path keeps lean)."""
    row = execute(session, _POLICY, {"connector_id": connector_id}).first()
    return Policy(row.deprovision_mode, row.suspend_days) if row is not None else Policy()


def follow_policy(session, connector_id: int, member: Membership, now: datetime) -> None:
    """After `set_active`: a member the IdP reactivated is no longer scheduled for removal;
    one it deactivated is, under "suspend" (a date already set stays)."""
    if member.active:
        member.removal_due_at = None
        return
    chosen = policy(session, connector_id)
    if chosen.suspends and member.removal_due_at is None:
        member.removal_due_at = chosen.due(now)


def suspend(session, member: Membership, chosen: Policy, now: datetime) -> datetime:
    """A DELETE under "suspend", after `set_active(False)`: the membership leaves SCIM
    (`source = "suspended"`: every SCIM query asks for "scim") and its teams (stashed, with
    their `display`; the teams' ETags change as for a removal); it is removed at its
    date, the earlier one if it was scheduled already. Returns that date."""
    rows = session.execute(
        select(Team.scim_id, TeamMember.display)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.membership_id == member.id)
        .order_by(TeamMember.team_id)
    ).all()
    if rows:
        bump_teams_of(session, member.id)
        session.execute(
            delete(TeamMember)
            .where(TeamMember.membership_id == member.id)
            .execution_options(synchronize_session=False)
        )
    # By the teams' uuids, not row ids: SQLite may give a deleted team's id to a new one.
    member.suspended_team_ids = [[scim_id, display] for scim_id, display in rows]
    member.source = "suspended"
    due = chosen.due(now)
    if member.removal_due_at is None or member.removal_due_at > due:
        member.removal_due_at = due
    member.updated_at = now
    return member.removal_due_at


def restore_teams(session, member: Membership, stashed: list | None, now: datetime) -> int:
    """Put a restored member back in the teams a DELETE took them out of (by their uuid),
    those that still exist in the account (their ETags change); how many."""
    wanted = {str(scim_id): display for scim_id, display in stashed or []}
    if not wanted:
        return 0
    existing = session.execute(
        select(Team.id, Team.scim_id).where(
            Team.scim_id.in_(list(wanted)), Team.account_id == member.account_id
        )
    ).all()
    if not existing:
        return 0
    session.execute(
        insert(TeamMember),
        [
            {
                "team_id": team_id,
                "membership_id": member.id,
                "display": wanted[scim_id],
                "created_at": now,
            }
            for team_id, scim_id in existing
        ],
    )
    session.execute(
        update(Team)
        .where(Team.id.in_([team_id for team_id, _ in existing]))
        .values(version=Team.version + 1)
        .execution_options(synchronize_session=False)
    )
    return len(existing)


# --- People and emails ----------------------------------------------------------------------


def _invite(member: Membership, now: datetime) -> str:
    token, member.invitation_token_hash = invitation_token()
    member.invited_at = now
    return token


def new_person(display_name: str | None, email: str, now: datetime) -> dict:
    """The person a provisioned email creates: no passphrase until the welcome email's
    delivery makes one (SPEC F5)."""
    return {
        "email": email,
        "email_key": email_key(email),
        "email_domain": email_domain(email),  # a Core INSERT fires no ORM event
        # The person's name is a convenience; the member keeps the full displayName
        # (512 characters), which PostgreSQL refused in user.display_name: a 500.
        "display_name": display_name[:PERSON_NAME] if display_name else None,
        "passphrase_hash": None,
        "must_change_passphrase": True,
        "session_generation": 1,
        "created_at": now,
    }


def _match_email(session, member: Membership, email: str | None, now: datetime) -> list:
    """Link `member` to the person `email` names; returns the emails to queue once the
    row has an id: ("welcome", user) or ("invite", token)."""
    member.email = text(email, "email")
    if email is None:
        return []
    if not _verified(session, member.account_id, email):
        check_invite(session, member.account_id, email)
        return [("invite", _invite(member, now))]
    member.invitation_token_hash = None
    user = find_user(session, email)
    if user is not None:
        member.user = user
        return []
    user = User(**new_person(member.display_name, email, now))
    session.add(user)
    member.user = user
    return [("welcome", user)]


def change_email(session, member: Membership, email: str | None, now: datetime) -> list:
    """The IdP changed the member's email: match again while the member has nobody
    linked; a linked person keeps their sign-in (their email is theirs, possibly in other
    accounts) unless both addresses are in this account's verified domains and the new
    one is free, in which case it follows. Returns the emails to `queue`."""
    if (email or None) == member.email:
        return []
    if member.user is None:
        member.invitation_token_hash = None
        return _match_email(session, member, email, now)
    member.email = text(email, "email")
    user = member.user
    if (
        email
        and email_key(email) != user.email_key
        and _verified(session, member.account_id, email)
        and _verified(session, member.account_id, user.email)
        and session.scalar(select(User.id).where(User.email_key == email_key(email))) is None
    ):
        user.email, user.email_key = email, email_key(email)
    return []


def queue(session, member: Membership, pending: list) -> None:
    """Write the emails `change_email` asked for into the outbox."""
    if not pending:
        return
    name = account_name(session, member.account_id)
    for kind, value in pending:
        if kind == "welcome":
            session.flush()  # the person's id
            outbox.enqueue_welcome(session, value.id, value.email, name)
        else:
            outbox.add(session, outbox.message(**invitation(member.email, value, name)))


# --- Audit (SPEC F10: every change SCIM made, in the transaction that makes it) -------------

AUDIT = AuditEvent.__table__
INSERT_AUDIT = Prepared(insert(AUDIT))
MAX_TARGET = 400  # characters of audit_event.target


def changes(before: dict, after: dict) -> dict[str, list]:
    """{attribute: [before, after]} for each top-level attribute that differs (a
    stored document never holds a password: serialize.document leaves it out)."""
    return {
        name: [before.get(name), after.get(name)]
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    }


def audit_row(account_id: int, action: str, target: str, detail: dict, now: datetime) -> dict:
    """An audit event of the IdP (no person acts: `via` says it was SCIM), as a row."""
    return {
        "account_id": account_id,
        "actor_user_id": None,
        "action": action,
        "target": target[:MAX_TARGET],
        "detail": {"via": "scim", **detail},
        "remote_addr": None,
        "created_at": now,
    }


def audit(session, row: dict) -> None:
    """Write an audit event in the request's transaction."""
    execute(session, INSERT_AUDIT, row)


def bind_audit(dialect, row: dict) -> Bound:
    """`audit`'s statement, bound ahead (`sql.Prepared.bind`)."""
    return INSERT_AUDIT.bind(dialect, row)


def user_event(
    account_id: int, scim_id: str, user_name: str, before: dict, after: dict, now: datetime
) -> dict | None:
    """The audit row of a user written from `before` to `after` (documents with their
    live `active`): created, deleted, deactivated, reactivated or updated; None when
    nothing changed."""
    changed = changes(before, after)
    if not changed:
        return None
    if not before:
        action = "scim.user_created"
    elif not after:
        action = "scim.user_deleted"
    elif before.get("active") is not False and after.get("active") is False:
        action = "scim.user_deactivated"
    elif before.get("active") is False and after.get("active") is not False:
        action = "scim.user_reactivated"
    else:
        action = "scim.user_updated"
    detail = {"id": scim_id, "changes": changed}
    return audit_row(account_id, action, f"user:{user_name}", detail, now)


def group_event(
    account_id: int,
    scim_id: str,
    before: dict,
    after: dict,
    now: datetime,
    added: int = 0,
    removed: int = 0,
) -> dict | None:
    """The audit row of a group written from `before` to `after` ({displayName,
    externalId}; {} when it did not or no longer exists), with how many members were
    added (or had their display changed) and removed; None when nothing changed."""
    changed = changes(before, after)
    if not changed and not added and not removed:
        return None
    action = (
        "scim.group_created"
        if not before
        else "scim.group_deleted"
        if not after
        else "scim.group_updated"
    )
    detail = {"id": scim_id, "changes": changed}
    if added or removed:
        detail["members"] = {"added": added, "removed": removed}
    name = after.get("displayName") or before.get("displayName") or scim_id
    return audit_row(account_id, action, f"group:{name}", detail, now)
