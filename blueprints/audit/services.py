"""The audit log of an account (SPEC F10): its events, filtered and paged for the Audit
log page, one event for the detail view, all of them for an export.

Pages are keyset pages, newest first, on (created_at, id): the page after another starts
below its last event, so a page deep in a million events costs what the first one does
(OFFSET would walk every event before it), and events written meanwhile neither shift
nor repeat the pages already seen. Each filter that narrows by a column (actor, action,
time range) rides an index that ends in (created_at, id); the resource and the free-text
search are read in that order until a page is full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import String, cast, func, literal, or_, select, tuple_

from blueprints.auth.services import email_key
from models import AuditEvent, User

PAGE_SIZE = 50
MAX_TEXT = 200  # characters of a resource or search filter

# Every action the application records, by area, with what the page calls it.
ACTIONS: dict[str, list[tuple[str, str]]] = {
    "Sign-in": [
        ("user.sign_in", "Signed in"),
        ("user.sign_in_failed", "Sign-in failed"),
        ("user.sso_sign_in", "Signed in with SSO"),
        ("user.sso_sign_in_failed", "SSO sign-in refused"),
        ("user.passphrase_refused", "Passphrase refused for a sensitive action"),
        ("user.passphrase_changed", "Passphrase changed"),
        ("user.reset_requested", "Passphrase reset requested"),
        ("user.passphrase_reset", "Passphrase reset"),
        ("user.signed_up", "Signed up (email confirmed)"),
    ],
    "Domains": [
        ("domain.added", "Domain added"),
        ("domain.verified", "Domain verified"),
        ("domain.verify_failed", "Domain verification failed"),
        ("domain.verification_lost", "Domain verification lost"),
        ("domain.removed", "Domain removed"),
        ("domain.capture_changed", "Domain capture turned on or off"),
        ("domain.lock_changed", "Domain lock turned on or off"),
        ("domain.capture_joined", "Person joined by domain capture"),
        ("domain.capture_refused", "Person refused by domain capture (no seat left)"),
    ],
    "SSO": [
        ("sso.saml_saved", "SAML settings saved"),
        ("sso.oidc_saved", "OIDC settings saved"),
        ("sso.test_succeeded", "SSO test succeeded"),
        ("sso.test_failed", "SSO test failed"),
        ("sso.enabled", "SSO enabled"),
        ("sso.disabled", "SSO disabled"),
    ],
    "SCIM": [
        ("scim.enabled", "SCIM enabled"),
        ("scim.disabled", "SCIM disabled"),
        ("scim.preview_started", "SCIM preview (dry run) started"),
        ("scim.went_live", "SCIM went live"),
        ("scim.token_created", "SCIM token created"),
        ("scim.token_revoked", "SCIM token revoked"),
        ("scim.token_access_changed", "SCIM token access changed"),
        ("scim.token_revealed", "SCIM token revealed"),
        ("scim.token_refreshed", "SCIM token refreshed"),
        ("scim.token_auto_refreshed", "SCIM token refreshed automatically"),
        ("scim.token_auto_refresh_failed", "SCIM token's automatic refresh failed"),
        ("scim.deprovision_policy_changed", "Deprovisioning policy changed"),
    ],
    "SCIM provisioning": [
        ("scim.user_created", "User provisioned"),
        ("scim.user_updated", "User updated"),
        ("scim.user_deactivated", "User deactivated"),
        ("scim.user_reactivated", "User reactivated"),
        ("scim.user_deleted", "User deleted"),
        ("scim.group_created", "Group created"),
        ("scim.group_updated", "Group updated"),
        ("scim.group_deleted", "Group deleted"),
    ],
    "Audit log": [
        ("audit.stream_configured", "Streaming started"),
        ("audit.stream_changed", "Streaming endpoint changed"),
        ("audit.stream_secret_revealed", "Streaming secret revealed"),
        ("audit.stream_tested", "Streaming test event sent"),
        ("audit.stream_removed", "Streaming stopped"),
    ],
    "Members": [
        ("member.deactivate", "Member deactivated"),
        ("member.reactivate", "Member reactivated"),
        ("member.remove", "Member removed"),
        ("member.make_co_owner", "Member made co-owner"),
        ("member.revoke_co_owner", "Co-owner made member"),
        ("membership.invited", "Person invited"),
        ("membership.invitation_accepted", "Invitation accepted"),
        ("member.restored", "Suspended member restored by the IdP"),
        ("member.remove_now", "Scheduled member removed now"),
        ("member.keep", "Scheduled removal cancelled"),
        ("member.removed_on_schedule", "Suspended member removed on schedule"),
    ],
    "Account settings": [
        ("account.invite_controls_changed", "Invite controls changed"),
        ("account.scim_only_changed", "SCIM only turned on or off"),
    ],
    "Team rules": [
        ("team_rule.added", "Team rule added"),
        ("team_rule.changed", "Team rule changed"),
        ("team_rule.moved", "Team rule moved"),
        ("team_rule.removed", "Team rule removed"),
    ],
}
LABELS = {action: label for group in ACTIONS.values() for action, label in group}
_CURSOR = re.compile(r"(\d{1,20})\.(\d{1,12})")  # microseconds since the epoch . event id
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def detail_text(detail: dict | None) -> str:
    """An event's detail as one line of JSON (the CSV export's cell)."""
    return json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""


def actor_name(event, emails: dict[int, str]) -> str:
    """Who acted, as the page shows it: a person's email; the identity provider for a
    change SCIM made; "System" for a job; a person since deleted."""
    if event.actor_user_id is not None:
        return emails.get(event.actor_user_id) or "A deleted user"
    if (event.detail or {}).get("via") == "scim":
        return "Identity provider (SCIM)"
    return "System"


def record(event, email: str | None) -> dict:
    """An event as the JSON Lines export and the SIEM stream carry it."""
    return {
        "id": event.id,
        "time": event.created_at.isoformat().replace("+00:00", "Z"),
        "actor": email or actor_name(event, {}),
        "action": event.action,
        "resource": event.target,
        "address": event.remote_addr,
        "detail": event.detail,
    }


def label(action: str) -> str:
    """What the page calls `action` (the action itself when it has no label yet)."""
    return LABELS.get(action, action)


@dataclass(frozen=True)
class Filters:
    """The list's filters, from the URL (`from_args`): all optional. `errors` says, per
    field, why a value was not used (shown next to the field)."""

    actor: str = ""
    action: str = ""
    resource: str = ""
    q: str = ""
    since: date | None = None
    until: date | None = None
    # Keyset cursors: "older than" / "newer than" an event ("<µs since epoch>.<id>").
    before: str = ""
    after: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> Filters:
        errors: dict[str, str] = {}

        def text(name: str) -> str:
            value = (args.get(name) or "").strip()
            if "\x00" in value:
                errors[name] = "This cannot contain a NUL character."
                return ""
            if len(value) > MAX_TEXT:
                errors[name] = f"At most {MAX_TEXT} characters."
                return ""
            return value

        def day(name: str) -> date | None:
            value = (args.get(name) or "").strip()
            if not value:
                return None
            try:
                return date.fromisoformat(value)
            except ValueError:
                errors[name] = "Enter a date as YYYY-MM-DD."
                return None

        action = text("action")
        if action and action not in LABELS:
            errors["action"] = "Choose an action from the list."
            action = ""
        since, until = day("since"), day("until")
        if since and until and since > until:
            errors["until"] = "The end of the range is before its start."
            until = None
        cursors = {}
        for name in ("before", "after"):
            value = (args.get(name) or "").strip()
            cursors[name] = value if _CURSOR.fullmatch(value) else ""
        return cls(
            actor=text("actor"),
            action=action,
            resource=text("resource"),
            q=text("q"),
            since=since,
            until=until,
            errors=errors,
            **cursors,
        )

    def args(self, **changes) -> dict:
        """The URL parameters of these filters (empty ones left out), with `changes`."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "q": self.q,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "before": self.before,
            "after": self.after,
        } | changes
        return {key: value for key, value in values.items() if value}

    @property
    def refused_text(self) -> bool:
        """Whether a text filter was refused: listing without it would show events the
        person asked to leave out, so nothing is listed."""
        return any(self.errors.get(name) for name in ("actor", "resource", "q"))

    @property
    def narrowed(self) -> bool:
        return any(self.args(before="", after="").values())


@dataclass
class Page:
    """One page of events, newest first, with the cursors of the pages beside it."""

    events: list
    actors: dict[int, str]
    older: str | None  # the `before` cursor of the next (older) page, if there is one
    newer: str | None  # the `after` cursor of the previous (newer) page, if there is one


def cursor(event) -> str:
    moment = event.created_at.replace(tzinfo=event.created_at.tzinfo or UTC)
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{event.id}"


def _position(value: str) -> tuple[datetime, int]:
    micros, event_id = _CURSOR.fullmatch(value).groups()
    return _EPOCH + timedelta(microseconds=int(micros)), int(event_id)


def _conditions(session, account_id: int, filters: Filters) -> list | None:
    """The WHERE of the filters; None when they can match nothing (an actor nobody is).
    The actor is looked up first, so that its events are read by their own index: as a
    subquery, SQLite read the account's million events looking for it."""
    conditions = [AuditEvent.account_id == account_id]
    if filters.actor:
        actor_id = session.scalar(select(User.id).where(User.email_key == email_key(filters.actor)))
        if actor_id is None:
            return None
        conditions.append(AuditEvent.actor_user_id == actor_id)
    if filters.action:
        conditions.append(AuditEvent.action == filters.action)
    if filters.since:
        conditions.append(AuditEvent.created_at >= datetime.combine(filters.since, time(), UTC))
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time(), UTC)
        conditions.append(AuditEvent.created_at < end)
    if filters.resource:
        conditions.append(_contains(AuditEvent.target, filters.resource))
    if filters.q:
        conditions.append(
            or_(
                _contains(AuditEvent.action, filters.q),
                _contains(AuditEvent.target, filters.q),
                _contains(cast(AuditEvent.detail, String), filters.q),
                _contains(AuditEvent.remote_addr, filters.q),
            )
        )
    return conditions


def _contains(column, text: str):
    """`column` contains `text`, ignoring case (LIKE wildcards in `text` taken as text)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(literal(f"%{escaped}%"), escape="\\")


def page(session, account_id: int, filters: Filters, size: int = PAGE_SIZE) -> Page:
    """The page of events the filters and cursor ask for (the newest without a cursor)."""
    if filters.refused_text:
        return Page([], {}, None, None)
    conditions = _conditions(session, account_id, filters)
    if conditions is None:
        return Page([], {}, None, None)
    order = (AuditEvent.created_at, AuditEvent.id)
    query = select(AuditEvent).where(*conditions)
    if filters.after:  # the page just newer than a cursor, read upwards, shown downwards
        position = tuple_(*order) > tuple_(*_typed(_position(filters.after)))
        rows = session.scalars(query.where(position).order_by(*order).limit(size + 1)).all()
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        newer = cursor(events[0]) if more_newer and events else None
        older = cursor(events[-1]) if events else None
    else:
        if filters.before:
            query = query.where(tuple_(*order) < tuple_(*_typed(_position(filters.before))))
        rows = session.scalars(query.order_by(*(c.desc() for c in order)).limit(size + 1)).all()
        events = rows[:size]
        older = cursor(events[-1]) if len(rows) > size else None
        newer = cursor(events[0]) if filters.before and events else None
    return Page(events, _emails(session, events), older, newer)


def _typed(position: tuple[datetime, int]) -> tuple:
    moment, event_id = position
    return literal(moment, AuditEvent.created_at.type), literal(event_id)


def _emails(session, events) -> dict[int, str]:
    ids = {e.actor_user_id for e in events if e.actor_user_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())


def get(session, account_id: int, event_id: int) -> tuple[AuditEvent, str | None] | None:
    """One event of the account, and its actor's email; None for another account's."""
    event = session.scalar(
        select(AuditEvent).where(AuditEvent.id == event_id, AuditEvent.account_id == account_id)
    )
    if event is None:
        return None
    email = session.scalar(select(User.email).where(User.id == event.actor_user_id))
    return event, email


def export_rows(session, account_id: int, filters: Filters) -> Iterator[tuple]:
    """Every event the filters select (cursors ignored), newest first, with its actor's
    email: streamed from one query, a batch at a time (flat memory for a million)."""
    if filters.refused_text:
        return iter(())
    conditions = _conditions(session, account_id, replace(filters, before="", after=""))
    if conditions is None:
        return iter(())
    query = (
        select(AuditEvent, User.email)
        .outerjoin(User, User.id == AuditEvent.actor_user_id)
        .where(*conditions)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .execution_options(yield_per=1000)
    )
    return iter(session.execute(query))
