"""The SCIM connector (SPEC F4): enable, reveal, refresh, disable, and the bearer-token
check the SCIM API uses. Plain functions of a session, an account and `now`, which flush
and never commit (the caller does).

A token is `scim_` + 256 random bits (url-safe base64). Stored as SHA-256 (enough for a
secret of that entropy; the lookup must be fast) and as a Fernet ciphertext for reveal.
It is never logged and never rendered except in the reveal and issue fragments.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from blueprints.common import audit, outbox
from blueprints.common.accounts import ADMIN_ROLES, admin_contacts
from blueprints.common.crypto import decrypt, encrypt
from blueprints.common.sql import execute
from blueprints.common.urls import absolute_url
from blueprints.domains.services import has_verified_domain
from models import Membership, ScimConnector, SsoConnection, User

TOKEN_PREFIX = "scim_"  # noqa: S105 (a public marker that makes leaked tokens findable)
IDPS = {"okta": "Okta", "entra": "Microsoft Entra ID", "other": "Another SCIM 2.0 client"}
# Form value -> days (None: no expiry), in the order the form offers them.
LIFETIMES = {
    "30": 30,
    "90": 90,
    "180": 180,
    "365": 365,
    "730": 730,
    "never": None,
}
LIFETIME_LABELS = {
    "30": "30 days",
    "90": "90 days",
    "180": "180 days",
    "365": "1 year",
    "730": "2 years",
    "never": "No expiry",
}


class ConnectorError(ValueError):
    """An action the connector's state doesn't allow; the message is for the owner."""


@dataclass
class Issued:
    connector: ScimConnector
    token: str


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def base_url(connector: ScimConnector) -> str:
    """The connector URL the IdP is configured with; it never changes."""
    return current_app.config["BASE_URL"] + f"/scim/v2/{connector.public_id}"


def get_connector(session, account_id: int) -> ScimConnector | None:
    return session.scalar(select(ScimConnector).where(ScimConnector.account_id == account_id))


# --- prerequisites ------------------------------------------------------------------------


def sso_enabled(session, account_id: int) -> bool:
    return bool(
        session.scalar(
            select(exists().where(SsoConnection.account_id == account_id, SsoConnection.enabled))
        )
    )


def missing_prerequisites(session, account_id: int) -> list[str]:
    """The seed's first two steps that don't hold yet: "domain", "sso"."""
    missing = []
    if not has_verified_domain(session, account_id):
        missing.append("domain")
    if not sso_enabled(session, account_id):
        missing.append("sso")
    return missing


def _is_active_admin(session, account_id: int, user_id: int | None) -> bool:
    if user_id is None:
        return False
    return bool(
        session.scalar(
            select(
                exists().where(
                    Membership.account_id == account_id,
                    Membership.user_id == user_id,
                    Membership.active.is_(True),
                    Membership.role.in_(ADMIN_ROLES),
                )
            )
        )
    )


def refresh_problem(session, connector: ScimConnector) -> str | None:
    """Why an automatic refresh can't happen now (SPEC F4), or None."""
    if not _is_active_admin(session, connector.account_id, connector.bound_user_id):
        return "The owner this connector is bound to is no longer an active owner or co-owner."
    if not has_verified_domain(session, connector.account_id):
        return "No verified domain is left."
    if not sso_enabled(session, connector.account_id):
        return "Single sign-on is off."
    return None


# --- state ----------------------------------------------------------------------------------


@dataclass
class TokenState:
    name: str  # valid|expiring|expired|no_expiry|disabled
    label: str
    days_left: int | None


def token_state(connector: ScimConnector, now: datetime) -> TokenState:
    """The badge on the SCIM page: valid, expiring soon (within the warning window),
    expired, or valid with no expiry."""
    if not connector.enabled:
        return TokenState("disabled", "Disabled", None)
    if connector.expires_at is None:
        return TokenState("no_expiry", "Valid, no expiry", None)
    left = connector.expires_at - now
    days = left.days if left.total_seconds() > 0 else 0
    if left.total_seconds() <= 0:
        return TokenState("expired", "Expired", 0)
    if left <= timedelta(days=current_app.config["SCIM_WARNING_DAYS"]):
        return TokenState(
            "expiring", f"Expiring soon: {days} day{'s' if days != 1 else ''} left", days
        )
    return TokenState("valid", "Valid", days)


def shows_warning(connector: ScimConnector | None, now: datetime) -> bool:
    """The banner: a failing automatic refresh with the expiry inside the warning window."""
    if connector is None or not connector.enabled or connector.refresh_failure_reason is None:
        return False
    if connector.expires_at is None:
        return False
    return connector.expires_at - now <= timedelta(days=current_app.config["SCIM_WARNING_DAYS"])


# --- the owner's actions --------------------------------------------------------------------


def _set_token(connector: ScimConnector, now: datetime) -> str:
    token = new_token()
    connector.token_hash = token_hash(token)
    connector.token_encrypted = encrypt(token)
    connector.issued_at = now
    connector.refreshed_at = now
    connector.expires_at = (
        now + timedelta(days=connector.lifetime_days) if connector.lifetime_days else None
    )
    connector.refresh_failure_reason = None
    connector.refresh_failed_at = None
    return token


def _notify_owners(
    session, connector: ScimConnector, subject: str, what: str, actor: User, now: datetime
) -> None:
    """A security notice to every active owner and co-owner (SPEC F7)."""
    for _user_id, email in admin_contacts(session, connector.account_id):
        outbox.enqueue(
            session,
            email,
            subject,
            "scim_notice",
            now=now,
            what=what,
            actor=actor.email,
            when=now.strftime("%Y-%m-%d %H:%M UTC"),
            link=absolute_url("scim_settings.index"),
        )


def enable(session, account_id: int, actor: User, idp: str, lifetime: str, now: datetime) -> Issued:
    """Turn SCIM on: the connector URL (kept if it existed) and a new token."""
    if idp not in IDPS:
        raise ConnectorError("Choose your identity provider.")
    if lifetime not in LIFETIMES:
        raise ConnectorError("Choose how long the token lasts.")
    missing = missing_prerequisites(session, account_id)
    if missing:
        raise ConnectorError("Verify a domain and enable SSO before enabling SCIM.")
    connector = get_connector(session, account_id)
    if connector is not None and connector.enabled:
        raise ConnectorError("SCIM is already enabled.")
    if connector is None:
        connector = ScimConnector(
            account_id=account_id, public_id=secrets.token_urlsafe(16), created_at=now
        )
        session.add(connector)
    connector.idp, connector.lifetime_days = idp, LIFETIMES[lifetime]
    connector.enabled, connector.enabled_at, connector.disabled_at = True, now, None
    connector.previous_token_hash = connector.previous_valid_until = None
    # A new token: the IdP is configured (step 4) once a request carries this one.
    connector.first_request_at = None
    connector.bound_user_id = connector.refreshed_by_user_id = actor.id
    token = _set_token(connector, now)
    audit.record(
        session,
        "scim.enabled",
        account_id=account_id,
        actor_user_id=actor.id,
        detail={"idp": idp, "lifetime_days": connector.lifetime_days},
    )
    _notify_owners(
        session,
        connector,
        "SCIM provisioning was enabled",
        "SCIM provisioning was enabled and a connector token issued",
        actor,
        now,
    )
    try:
        session.flush()
    except IntegrityError:  # enabled in another window at the same moment
        session.rollback()  # a failed flush spoils the transaction (nothing else in it yet)
        raise ConnectorError("SCIM was just enabled in another window. Reload the page.") from None
    return Issued(connector, token)


def reveal(session, connector: ScimConnector, actor: User, now: datetime) -> str:
    """The current token, for an owner who re-entered the passphrase; always audited."""
    if not connector.enabled or not connector.token_encrypted:
        raise ConnectorError("SCIM is not enabled.")
    token = decrypt(connector.token_encrypted)
    audit.record(
        session, "scim.token_revealed", account_id=connector.account_id, actor_user_id=actor.id
    )
    _notify_owners(
        session,
        connector,
        "Your SCIM token was revealed",
        "the SCIM connector token was revealed",
        actor,
        now,
    )
    return token


def refresh(session, connector: ScimConnector, actor: User, now: datetime) -> Issued:
    """A manual refresh: a new token on the same URL, the old one honoured for the grace
    period; binds the connector to `actor` and clears any refresh failure."""
    if not connector.enabled:
        raise ConnectorError("SCIM is not enabled.")
    grace = timedelta(hours=current_app.config["SCIM_TOKEN_GRACE_HOURS"])
    # The grace period never outlives the replaced token: refreshing an expired token
    # must not bring it back to life.
    until = now + grace
    if connector.expires_at is not None:
        until = min(until, connector.expires_at)
    connector.previous_token_hash = connector.token_hash if until > now else None
    connector.previous_valid_until = until if until > now else None
    connector.bound_user_id = connector.refreshed_by_user_id = actor.id
    token = _set_token(connector, now)
    audit.record(
        session, "scim.token_refreshed", account_id=connector.account_id, actor_user_id=actor.id
    )
    _notify_owners(
        session,
        connector,
        "Your SCIM token was refreshed",
        "the SCIM connector token was refreshed (the previous one keeps working "
        f"for {grace.total_seconds() / 3600:g} hours)",
        actor,
        now,
    )
    return Issued(connector, token)


def disable(session, connector: ScimConnector, actor: User, now: datetime) -> None:
    """Turn SCIM off: IdP traffic gets 401; members stay, now managed by hand."""
    connector.enabled, connector.disabled_at = False, now
    connector.token_hash = connector.token_encrypted = None
    connector.previous_token_hash = connector.previous_valid_until = None
    audit.record(session, "scim.disabled", account_id=connector.account_id, actor_user_id=actor.id)
    _notify_owners(
        session,
        connector,
        "SCIM provisioning was disabled",
        "SCIM provisioning was disabled",
        actor,
        now,
    )


# --- the SCIM API's bearer check ------------------------------------------------------------


_connectors = ScimConnector.__table__
# Built once, Core and not the ORM: every SCIM request runs it, and an ORM load (identity
# map, instance state) cost more than the query itself.
_CALLER = select(
    _connectors.c.id,
    _connectors.c.account_id,
    _connectors.c.public_id,
    _connectors.c.enabled,
    _connectors.c.token_hash,
    _connectors.c.previous_token_hash,
    _connectors.c.previous_valid_until,
    _connectors.c.expires_at,
    _connectors.c.last_used_at,
    _connectors.c.first_request_at,
).where(_connectors.c.public_id == bindparam("public_id"))
USED = (
    update(_connectors)
    .where(_connectors.c.id == bindparam("connector_id"))
    .values(
        last_used_at=bindparam("now"),
        first_request_at=func.coalesce(_connectors.c.first_request_at, bindparam("now")),
    )
)


@dataclass(frozen=True)
class Caller:
    """The connector a SCIM request is addressed to: what the SCIM API needs of it."""

    id: int
    account_id: int
    public_id: str
    expires_at: datetime | None
    last_used_at: datetime | None = None
    first_request_at: datetime | None = None


@dataclass
class Authentication:
    connector: Caller | None
    reason: str | None  # None when accepted; else unknown|disabled|expired|missing


def _caller(row) -> Caller:
    return Caller(
        row.id,
        row.account_id,
        row.public_id,
        row.expires_at,
        row.last_used_at,
        row.first_request_at,
    )


def use_due(caller: Caller, now: datetime) -> bool:
    """Whether the connector's first request or last use is to be stamped now (last use
    to the minute: what the page shows, without a write per request)."""
    return (
        caller.last_used_at is None
        or caller.first_request_at is None
        or now - caller.last_used_at >= timedelta(minutes=1)
    )


def record_use(session, caller: Caller, now: datetime) -> None:
    """Stamp the connector's first request and last use, in the caller's transaction."""
    if use_due(caller, now):
        execute(session, USED, {"connector_id": caller.id, "now": now})


def find_caller(session, public_id: str) -> Caller | None:
    """The connector `public_id` names, for the request log of a refused request."""
    row = execute(session, _CALLER, {"public_id": public_id}).first()
    return None if row is None else _caller(row)


def authenticate(
    session, public_id: str, authorization: str | None, now: datetime, record: bool = True
) -> Authentication:
    """Check `Authorization: Bearer <token>` for connector `public_id` (SPEC F5).

    The token only works for its own connector; hashes are compared in constant time;
    the previous token is accepted until its grace period ends. With `record`, an accepted
    token's use is stamped at once; the SCIM API passes False and stamps it with the rest
    of the request's writes (`record_use`), so that its check writes nothing.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return Authentication(None, "missing")
    row = execute(session, _CALLER, {"public_id": public_id}).first()
    if row is None:
        return Authentication(None, "unknown")
    presented = token_hash(token)
    current = row.token_hash and hmac.compare_digest(presented, row.token_hash)
    previous = (
        row.previous_token_hash
        and row.previous_valid_until is not None
        and now < row.previous_valid_until
        and hmac.compare_digest(presented, row.previous_token_hash)
    )
    if not row.enabled:
        return Authentication(None, "disabled")
    if not (current or previous):
        return Authentication(None, "unknown")
    caller = _caller(row)
    if row.expires_at is not None and now >= row.expires_at:
        return Authentication(caller, "expired")
    if record:
        record_use(session, caller, now)
    return Authentication(caller, None)
