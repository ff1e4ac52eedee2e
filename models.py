"""All SQLAlchemy models (SPEC "Model").

Times are stored as naive UTC and handed back timezone-aware, so SQLite and PostgreSQL
behave the same and comparisons with `datetime.now(UTC)` never mix naive and aware.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from blueprints.common.extensions import db


class UTCDateTime(TypeDecorator):
    """A DateTime that is always timezone-aware UTC in Python."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def not_null(column: str) -> dict:
    """A partial index's condition, on both databases: only the rows where `column` holds
    a value. For a column empty on most rows whose every lookup compares a value."""
    condition = text(f"{column} IS NOT NULL")
    return {"sqlite_where": condition, "postgresql_where": condition}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Account(db.Model):
    """An enterprise account; owns domains, memberships and (later) SSO and SCIM."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    seat_limit: Mapped[int] = mapped_column(Integer, default=50)
    # Memberships holding a licence (`Membership.licensed`), kept by blueprints.common.seats
    # with guarded UPDATEs, so "no seat left" holds under concurrent provisioning.
    seats_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Invite controls (SPEC F13, blueprints/domains/policy.py): invitations may go to any
    # domain, to the verified domains only, or to the domains listed in `invite_domains`
    # (one normalised name a line).
    invite_policy: Mapped[str] = mapped_column(String(10), default="any", server_default="any")
    invite_domains: Mapped[str | None] = mapped_column(Text)
    # "SCIM only" (SPEC F13): only the IdP creates members; domain capture and SSO
    # just-in-time membership are off (blueprints/domains/policy.py).
    scim_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(UserMixin, db.Model):
    """A global identity; `email_key` makes the email unique case-insensitively."""

    __table_args__ = (
        # A verified domain's unclaimed accounts (SPEC F13): its people in email order,
        # one index range however many people other domains have.
        Index("ix_user_email_domain_key", "email_domain", "email_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    # The email's domain as domains are stored (IDNA, lower case: Domain.name), kept by
    # `_keep_email_domain` on every ORM write; a Core INSERT sets it itself
    # (scim_api.provisioning.new_person).
    email_domain: Mapped[str | None] = mapped_column(String(253))
    display_name: Mapped[str | None] = mapped_column(String(200))
    passphrase_hash: Mapped[str | None] = mapped_column(String(200))
    must_change_passphrase: Mapped[bool] = mapped_column(Boolean, default=False)
    # Part of the session identifier: bumping it ends every other session.
    session_generation: Mapped[int] = mapped_column(Integer, default=1)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # Members page
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    def get_id(self) -> str:
        return f"{self.id}:{self.session_generation}"


@event.listens_for(User, "before_insert")
@event.listens_for(User, "before_update")
def _keep_email_domain(mapper, connection, user: User) -> None:
    # Imported here: the domains service imports the models (it owns the IDNA rules).
    from blueprints.domains.services import email_domain

    user.email_domain = email_domain(user.email) if user.email else None


class Membership(db.Model):
    """A user in an account, with a role and where the membership came from.

    It is also the SCIM User resource (SPEC F5) once an IdP has provisioned it
    (`source == "scim"`): `scim_id` is the resource id, `scim_resource` the whole resource
    as written, and the columns copy what is looked up often (blueprints.scim_api.filters
    compiles filters on either to SQL). `user_id`
    is empty while the member has no email we may join on (no email yet, or an invitation
    not accepted). `version` is the ETag (optimistic locking: a concurrent write fails).
    """

    __table_args__ = (
        UniqueConstraint("account_id", "user_id", name="uq_membership_account_id"),
        UniqueConstraint("account_id", "user_name_key", name="uq_membership_account_user_name"),
        UniqueConstraint("account_id", "external_id", name="uq_membership_account_external_id"),
        Index("ix_membership_account_source_id", "account_id", "source", "id"),
        # The Members page sorts by email or name (SPEC F6: fast at 100,000 members).
        Index("ix_membership_account_email", "account_id", "email", "id"),
        Index("ix_membership_account_sort_name", "account_id", "sort_name"),
        Index("ix_membership_account_display_name_key", "account_id", "display_name_key"),
        # The `remove-suspended-members` job's walk (SPEC F12 deprovisioning policy), and
        # an invitation's link. Both columns are empty on almost every row, and each lookup
        # compares a value: only the rows holding one are indexed (a create writes neither).
        Index("ix_membership_removal_due_at", "removal_due_at", **not_null("removal_due_at")),
        Index(
            "uq_membership_invitation_token_hash",
            "invitation_token_hash",
            unique=True,
            **not_null("invitation_token_hash"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scim_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20), default="member")  # owner|co-owner|member
    # scim|manual|suspended. "suspended": deleted by the IdP under the "suspend"
    # deprovisioning policy (SPEC F12): kept (deactivated) until `removal_due_at`, hidden
    # from SCIM (every SCIM query asks for source "scim"), restored if the IdP creates the
    # same user again in time.
    source: Mapped[str] = mapped_column(String(20), default="manual")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    licensed: Mapped[bool] = mapped_column(Boolean, default=True)  # holds a seat
    # The SCIM User resource (RFC 7643 §4.1 and the enterprise extension §4.3) as the IdP
    # wrote it, as scim2-models validates and normalises it: every attribute but the id,
    # meta, groups (ours) and password (never stored). Rendered as is, with the live
    # `active`; what the API looks up often is also in the columns below, with indexes.
    scim_resource: Mapped[dict | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    )
    external_id: Mapped[str | None] = mapped_column(String(512))
    user_name: Mapped[str | None] = mapped_column(String(512))
    user_name_key: Mapped[str | None] = mapped_column(String(512))  # NFC, lower case
    # SCIM: primary > work > first email. Manual members: their person's email, copied
    # when the membership is made, so the Members page searches and sorts one column.
    email: Mapped[str | None] = mapped_column(String(512))
    display_name: Mapped[str | None] = mapped_column(String(512))
    display_name_key: Mapped[str | None] = mapped_column(String(512))  # `displayName eq`
    given_name: Mapped[str | None] = mapped_column(String(512))
    family_name: Mapped[str | None] = mapped_column(String(512))
    # Outside the verified domains nobody is joined silently: an invitation (SPEC F5).
    invitation_token_hash: Mapped[str | None] = mapped_column(String(64))
    invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The Members page's search and name sort (kept by refresh_search on every write):
    # email, name and userName folded into one string, and the folded name.
    search_key: Mapped[str | None] = mapped_column(Text)
    sort_name: Mapped[str | None] = mapped_column(String(512))
    # The deprovisioning policy's schedule (SPEC F12): deactivated or deleted by the IdP
    # under "suspend", removed by the `remove-suspended-members` job from then on.
    removal_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The teams a DELETE took the member out of, as [team scim_id, members[].display]
    # pairs (restored if the IdP creates the user again inside the window; teams deleted
    # since are skipped).
    suspended_team_ids: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}

    account: Mapped[Account] = relationship()
    user: Mapped[User | None] = relationship(back_populates="memberships")
    emails: Mapped[list[MemberEmail]] = relationship(
        order_by="MemberEmail.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    @property
    def is_admin(self) -> bool:
        return self.active and self.role in ("owner", "co-owner")

    @property
    def shown_name(self) -> str | None:
        """displayName, else given and family name."""
        return shown_name(self.display_name, self.given_name, self.family_name)

    def refresh_search(self) -> None:
        """Recompute search_key and sort_name from the columns they fold (ORM writes do it
        in before_insert/before_update; a Core INSERT uses `search_columns`)."""
        folded = {key: getattr(self, key) for key in SEARCHED_COLUMNS}
        for key, value in search_columns(folded).items():
            setattr(self, key, value)

    @property
    def status(self) -> str:
        """active, deactivated or invited (SPEC F6)."""
        if self.invitation_token_hash is not None:
            return "invited"
        return "active" if self.active else "deactivated"


SEARCHED_COLUMNS = ("email", "display_name", "given_name", "family_name", "user_name")


def shown_name(display_name: str | None, given: str | None, family: str | None) -> str | None:
    """The name the Members page shows and sorts by: displayName, else given and family."""
    return display_name or " ".join(p for p in (given, family) if p) or None


def search_columns(row: Mapping[str, Any]) -> dict[str, str | None]:
    """search_key and sort_name of a membership whose columns `row` holds: email, name
    (displayName, else given and family name) and userName, folded as `search_fold`."""
    name = shown_name(row.get("display_name"), row.get("given_name"), row.get("family_name"))
    parts = [p for p in (row.get("email"), name, row.get("user_name")) if p]
    return {
        "search_key": search_fold("\n".join(parts)) if parts else None,
        "sort_name": search_fold(name)[:512] if name else None,
    }


def search_fold(value: str) -> str:
    """The form the Members page compares in: NFC, lower case (a query is folded alike)."""
    return unicodedata.normalize("NFC", value).lower()


@event.listens_for(Membership, "before_insert")
@event.listens_for(Membership, "before_update")
def _refresh_search(mapper, connection, membership: Membership) -> None:
    membership.refresh_search()


class MemberEmail(db.Model):
    """One of a SCIM user's `emails` (multi-valued, so a row each: filters and value
    paths such as `emails[type eq "work"]` become EXISTS subqueries)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(
        ForeignKey("membership.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[str | None] = mapped_column(String(512))
    value_key: Mapped[str | None] = mapped_column(String(512), index=True)
    type: Mapped[str | None] = mapped_column(String(512))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    display: Mapped[str | None] = mapped_column(String(512))


class Team(db.Model):
    """A team in an account; the SCIM Group resource when an IdP manages it.

    `version` (the ETag) is bumped with `version = version + 1` in SQL by every change,
    member changes included, so concurrent member additions never lose a bump."""

    __table_args__ = (
        UniqueConstraint("account_id", "display_name_key", name="uq_team_account_display_name"),
        UniqueConstraint("account_id", "external_id", name="uq_team_account_external_id"),
        Index("ix_team_account_source_id", "account_id", "source", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scim_id: Mapped[str] = mapped_column(String(36), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(512))
    display_name_key: Mapped[str] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(String(20), default="manual")  # scim|manual
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(db.Model):
    """One member of one team: adding or removing a member is one row, whatever the size
    of the team (SPEC F5 "Concurrency")."""

    __table_args__ = (Index("ix_team_member_membership_id", "membership_id"),)

    team_id: Mapped[int] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), primary_key=True
    )
    membership_id: Mapped[int] = mapped_column(
        ForeignKey("membership.id", ondelete="CASCADE"), primary_key=True
    )
    # `members[].display` as the IdP wrote it (Okta sends the user's email there).
    display: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamRule(db.Model):
    """A team rule (SPEC F12): members of a SCIM-managed team get `role` ("co-owner" or
    "member") and hold a licence or not. Rules are ordered by `position`; the first rule
    whose team a member is in decides (blueprints.members.rules)."""

    __table_args__ = (
        UniqueConstraint("account_id", "team_id", name="uq_team_rule_account_team"),
        Index("ix_team_rule_account_position", "account_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))  # co-owner|member
    licensed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    team: Mapped[Team] = relationship()


class TeamRuleRun(db.Model):
    """Re-applying an account's team rules to every SCIM member, in batches (the
    `apply-team-rules` job). A rule change bumps `generation`; the job works while
    `applied_generation` is behind it, keyset by membership id (`last_id`)."""

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer, default=1)
    running_generation: Mapped[int] = mapped_column(Integer, default=0)  # the pass under way
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)  # the last finished
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    unlicensed: Mapped[int] = mapped_column(Integer, default=0)  # left without a seat
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Domain(db.Model):
    """An email domain an account claims, proven by a DNS TXT record (SPEC F2)."""

    __table_args__ = (
        UniqueConstraint("account_id", "name"),
        # A verified domain belongs to one account only.
        Index(
            "uq_domain_verified_name",
            "name",
            unique=True,
            sqlite_where=text("status = 'verified'"),
            postgresql_where=text("status = 'verified'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253))  # IDNA (xn--) form, lower case
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|verified|failed
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while a verified domain's record is missing on re-check (SPEC F2 "lost record").
    lost_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Domain controls (SPEC F13, blueprints/domains/policy.py), meaningful while verified
    # and switched off with the verification: capture joins the domain's people who sign
    # up or sign in with SSO; lock keeps them out of other accounts unless invited.
    capture: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship()


class Signup(db.Model):
    """A self sign-up waiting for its email to be confirmed (SPEC F13): the person exists
    only once the single-use link is opened; only the SHA-256 of its token is kept."""

    __table_args__ = (Index("ix_signup_email_key", "email_key", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    passphrase_hash: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PassphraseReset(db.Model):
    """A single-use passphrase reset link; only the SHA-256 of its token is kept."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()


class LoginThrottle(db.Model):
    """Failed sign-in counter for one key ("account:<email>" or "address:<ip>")."""

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(db.Model):
    """Who did what, when, in which account. Never holds a secret."""

    # Keyset pages of the Audit log page, newest first on (created_at, id): by account,
    # and by account and action or actor (blueprints/audit/services.py). The IdP's events
    # have no actor: only the events that have one are in the actor's index.
    __table_args__ = (
        Index("ix_audit_event_account_created", "account_id", "created_at", "id"),
        Index("ix_audit_event_account_action", "account_id", "action", "created_at", "id"),
        Index(
            "ix_audit_event_account_actor",
            "account_id",
            "actor_user_id",
            "created_at",
            "id",
            **not_null("actor_user_id"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(String(400))
    detail: Mapped[dict | None] = mapped_column(JSON)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditStream(db.Model):
    """Where an account's audit events are streamed (SPEC F10): an HTTPS endpoint of the
    owner's SIEM, and the signing secret (encrypted: it is needed to sign, and shown to
    the owner again behind the passphrase).

    The queue is `AuditDelivery`: a database trigger on audit_event (migration
    d2e3f4a5b6c7) adds a row for every event of an account with an enabled stream, in
    the transaction that writes the event, whichever code writes it. The delivery job
    (blueprints/audit/jobs.py) sends an account's events one at a time in id order and
    stops at the first failure until `next_attempt_at`, so they arrive in order.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), unique=True
    )
    endpoint_url: Mapped[str] = mapped_column(String(2048))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Delivery: consecutive failures of the event at the head of the queue, when to try
    # again, and which process is sending now (a guarded UPDATE claims the stream).
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the page shows: the last attempt (a real event or a test) and its outcome.
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status; None: no answer
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditDelivery(db.Model):
    """An audit event waiting to be sent to its account's stream; deleted once sent."""

    __table_args__ = (Index("ix_audit_delivery_stream_id", "stream_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("audit_stream.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(
        ForeignKey("audit_event.id", ondelete="CASCADE"), index=True
    )


class OutboxEmail(db.Model):
    """An email waiting for delivery (SPEC F7): written in the transaction that causes it.

    `dedupe_key` makes "at most one of these" a database guarantee, e.g. one warning per
    owner per day whatever number of processes run the sweep.
    """

    __table_args__ = (Index("ix_outbox_email_due", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # gave up
    last_error: Mapped[str | None] = mapped_column(String(500))
    # Set for an email whose body holds a secret made at delivery (the welcome email's
    # initial passphrase): the body is rendered then and never stored.
    kind: Mapped[str | None] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobLease(db.Model):
    """Who runs a scheduled job right now (SPEC F8); one row per job name."""

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(120))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SsoConnection(db.Model):
    """The account's single sign-on connection (SPEC F3): SAML 2.0 or OpenID Connect.

    `public_id` names the connection in public URLs (ACS, SP metadata) without exposing
    row ids. The OIDC client secret is stored encrypted (blueprints.common.crypto).
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), unique=True
    )
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    protocol: Mapped[str | None] = mapped_column(String(10))  # saml|oidc; None until saved
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # SAML 2.0: the IdP as configured (fields, or parsed from pasted metadata XML).
    saml_idp_entity_id: Mapped[str | None] = mapped_column(String(1024))
    saml_idp_sso_url: Mapped[str | None] = mapped_column(String(2048))
    saml_idp_certificate: Mapped[str | None] = mapped_column(Text)  # PEM
    saml_idp_metadata_xml: Mapped[str | None] = mapped_column(Text)
    # OpenID Connect.
    oidc_issuer: Mapped[str | None] = mapped_column(String(1024))
    oidc_client_id: Mapped[str | None] = mapped_column(String(512))
    oidc_client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    oidc_discovery: Mapped[dict | None] = mapped_column(JSON)
    # The last test sign-in: enabling needs a successful one since the last change.
    tested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tested_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    test_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    test_message: Mapped[str | None] = mapped_column(String(500))
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship()


class UsedAssertion(db.Model):
    """SAML assertion ids already accepted, kept until they expire: one-time use."""

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("sso_connection.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SsoFlow(db.Model):
    """One sign-in through the IdP in progress (a test by the owner, or a member's login).

    Kept in the database, not the session: a SAML response arrives as a cross-site POST,
    which a SameSite=Lax session cookie does not accompany. The id is the OIDC `state` or
    the SAML RelayState; the SAML request id is what InResponseTo must equal.
    """

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("sso_connection.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(10))  # test|login
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    next_url: Mapped[str | None] = mapped_column(String(2048))
    saml_request_id: Mapped[str | None] = mapped_column(String(256), index=True)
    oidc_nonce: Mapped[str | None] = mapped_column(String(128))
    oidc_code_verifier: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A SAML response is checked at the ACS (a cross-site POST, without our cookie) and
    # its outcome parked here until the starting browser collects it (a same-site GET).
    result_email: Mapped[str | None] = mapped_column(String(320))
    result_error: Mapped[str | None] = mapped_column(String(500))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScimConnector(db.Model):
    """The account's SCIM connector (SPEC F4): the URL an IdP provisions through. Its
    bearer tokens are `ScimToken` rows (SPEC F11: one or more, named); what stays here is
    connector-level: on or off, the IdP picked, when it was first and last called.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), unique=True
    )
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # in the URL, forever
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    idp: Mapped[str] = mapped_column(String(20), default="other")  # okta|entra|other
    # What `active: false` and DELETE do (SPEC F12): "remove" ends access now (a DELETE
    # removes the membership); "suspend" keeps the membership deactivated for
    # `suspend_days`, then the `remove-suspended-members` job removes it.
    deprovision_mode: Mapped[str] = mapped_column(
        String(10), default="remove", server_default="remove"
    )
    suspend_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # "preview" (SPEC F12, dry run): the IdP's writes are validated and answered but
    # not applied; what they would do is kept in `ScimPreview` rows. "live" applies them.
    mode: Mapped[str] = mapped_column(String(10), default="live", server_default="live")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_request_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship()
    tokens: Mapped[list[ScimToken]] = relationship(
        back_populates="connector", order_by="ScimToken.id", passive_deletes=True
    )


class ScimPreview(db.Model):
    """What one resource the IdP wrote in preview would have done (SPEC F12, dry run):
    the resource as the IdP was answered (`document`, so a GET returns it), and its
    forecast `outcome`: created | matched | invited (users), group (groups), collision
    (a 409, no resource), update | deactivate | remove (a write to a live resource).
    Deleted when the connector goes live: nothing here is ever applied."""

    __table_args__ = (
        UniqueConstraint("connector_id", "scim_id", name="uq_scim_preview_connector_scim_id"),
        Index("ix_scim_preview_user_name", "connector_id", "kind", "user_name_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)  # also the arrival order
    connector_id: Mapped[int] = mapped_column(ForeignKey("scim_connector.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # User | Group
    scim_id: Mapped[str | None] = mapped_column(String(64))  # None for a collision
    user_name_key: Mapped[str | None] = mapped_column(String(512))
    external_id: Mapped[str | None] = mapped_column(String(512))
    display_name_key: Mapped[str | None] = mapped_column(String(512))
    email_key: Mapped[str | None] = mapped_column(String(320))
    document: Mapped[dict | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    )
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict | None] = mapped_column(JSON)
    needs_seat: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScimToken(db.Model):
    """One named bearer token of a connector (SPEC F11). Stored twice, never in clear: a
    SHA-256 hash to look it up (the SCIM API's one indexed lookup per request) and a
    Fernet ciphertext so that an owner can reveal it again. Each token has its own
    lifetime, refresh history and last use; revoking one leaves the others working.

    A revoked token keeps its row (and its hash, so that the IdP is told it was revoked
    rather than that it is unknown) but loses its ciphertext: nobody reveals it again.
    Its name is free again: names are unique among a connector's live tokens only
    (`uq_scim_token_live_name`).
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(
        ForeignKey("scim_connector.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_encrypted: Mapped[str | None] = mapped_column(Text)
    # The secret a manual refresh replaced keeps working until then (IdP update window).
    previous_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifetime_days: Mapped[int | None] = mapped_column(Integer)  # None: no expiry
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stamped by the batched request log (blueprints/scim_api/request_log.py), to the minute.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_addr: Mapped[str | None] = mapped_column(String(45))  # IPv6: 45 at most
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    # The owner whose authority automatic refreshes rely on (who created or last refreshed).
    bound_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    refreshed_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    refresh_failure_reason: Mapped[str | None] = mapped_column(String(300))
    refresh_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    # Where and how it may be used (SPEC F11): the client networks it is accepted from
    # (canonical CIDR ranges, one per line; None: any address), and whether it may only
    # read (GET and POST .search).
    allowed_networks: Mapped[str | None] = mapped_column(Text)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    connector: Mapped[ScimConnector] = relationship(back_populates="tokens")
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_user_id])
    bound_user: Mapped[User | None] = relationship(foreign_keys=[bound_user_id])
    refreshed_by: Mapped[User | None] = relationship(foreign_keys=[refreshed_by_user_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_user_id])


# A name is taken while its token is live; a revoked token's name can be given again (the
# usual case: SCIM disabled, then enabled again with a new "Default").
Index(
    "uq_scim_token_live_name",
    ScimToken.connector_id,
    ScimToken.name,
    unique=True,
    sqlite_where=ScimToken.revoked_at.is_(None),
    postgresql_where=ScimToken.revoked_at.is_(None),
)


class ScimRequestLog(db.Model):
    """One SCIM request a connector received, for the log on the SCIM page. No bodies:
    they hold personal data."""

    __table_args__ = (Index("ix_scim_request_log_connector_id_id", "connector_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("scim_connector.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(10))
    resource: Mapped[str] = mapped_column(String(300))
    status: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(10))  # success|failure
    detail: Mapped[str | None] = mapped_column(String(500))
    # The client's address (IPv6 at most 45 characters): which IdP, or who else, called.
    remote_addr: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The health panel (blueprints/scim_settings/health.py): the last success, and the requests
# and errors of the last 24 hours, each one index range of one outcome, however big the log.
Index(
    "ix_scim_request_log_health",
    ScimRequestLog.connector_id,
    ScimRequestLog.outcome,
    ScimRequestLog.created_at,
)


class ScimProblem(db.Model):
    """One open (or resolved) provisioning problem of a connector, for the health panel of
    the SCIM page (SPEC F10): the same problem repeated (an IdP retrying one conflicting
    user 500 times) is one row with a count, kept by the request log's batch writer
    (blueprints/scim_api/request_log.py) in the transaction that writes its log rows, so
    a SCIM request itself never writes here.

    `key` tells apart problems of one kind (the userName in conflict, the group whose
    members were skipped…). `last_request_log_id` has no foreign key: the log is purged
    after SCIM_LOG_RETENTION_DAYS and the problem outlives it, without the link.
    """

    __table_args__ = (
        UniqueConstraint("connector_id", "kind", "key", name="uq_scim_problem_connector_kind_key"),
        # The open list (resolved_at IS NULL), newest first; the seats sweep (jobs.py).
        Index("ix_scim_problem_open", "connector_id", "resolved_at", "last_seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("scim_connector.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # uniqueness|seats|unknown_members|rejected
    key: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str | None] = mapped_column(String(500))  # the latest occurrence's
    # Occurrences since first_seen_at: since the problem (re)opened.
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_request_log_id: Mapped[int | None] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
