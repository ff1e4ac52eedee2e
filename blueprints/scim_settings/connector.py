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
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from flask import current_app
from sqlalchemy import and_, bindparam, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from blueprints.common import audit, outbox
from blueprints.common.accounts import ADMIN_ROLES, admin_contacts
from blueprints.common.crypto import decrypt, encrypt
from blueprints.common.sql import Prepared, execute
from blueprints.common.urls import absolute_url
from blueprints.domains.services import has_verified_domain
from models import Membership, ScimConnector, ScimPreview, ScimToken, SsoConnection, User

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


DEFAULT_NAME = "Default"  # the token Enable SCIM creates, and the migrated one
NAME_MAX = 80
NETWORKS_MAX = 50  # ranges in one allow-list: an IdP publishes a handful


class ConnectorError(ValueError):
    """An action the connector's state doesn't allow; the message is for the owner."""


class PolicyError(ConnectorError):
    """A deprovisioning policy the service refuses; `field` is where the page shows it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class TokenError(ConnectorError):
    """A New token form the service refuses; `field` is where the page shows it (None:
    above the form)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Issued:
    connector: ScimConnector
    token: str  # the secret, shown once
    scim_token: ScimToken


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


def refresh_problem(session, connector: ScimConnector, token: ScimToken) -> str | None:
    """Why an automatic refresh of `token` can't happen now (SPEC F4), or None."""
    if not _is_active_admin(session, connector.account_id, token.bound_user_id):
        return "The owner this token is bound to is no longer an active owner or co-owner."
    if not has_verified_domain(session, connector.account_id):
        return "No verified domain is left."
    if not sso_enabled(session, connector.account_id):
        return "Single sign-on is off."
    return None


# --- where and how a token may be used (SPEC F11) -------------------------------------------


def parse_networks(text: str | None) -> str | None:
    """An allow-list as an owner types it (addresses or CIDR ranges, IPv4 or IPv6,
    separated by commas, spaces or lines) → canonical ranges, one per line, or None for
    "any address". Raises TokenError on the field with what is wrong and what would do."""
    entries = [entry for entry in (text or "").replace(",", " ").split() if entry]
    if not entries:
        return None
    if len(entries) > NETWORKS_MAX:
        raise TokenError(
            "allowed_networks",
            f"At most {NETWORKS_MAX} ranges; use wider ones (e.g. 203.0.113.0/24).",
        )
    networks: list[str] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                wider = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise TokenError(
                    "allowed_networks",
                    f"“{entry[:60]}” is not an IP address or CIDR range "
                    "(e.g. 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32).",
                ) from None
            raise TokenError(
                "allowed_networks",
                f"“{entry[:60]}” has bits set past its prefix: did you mean {wider}?",
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    return "\n".join(networks)


@lru_cache(maxsize=4096)
def _networks(stored: str) -> tuple:
    return tuple(ipaddress.ip_network(line) for line in stored.splitlines())


def address_allowed(stored: str | None, addr: str | None) -> bool:
    """Whether a request from `addr` may use a token with allow-list `stored` (None:
    any address). An IPv4 client seen as IPv6 (::ffff:a.b.c.d) counts as its IPv4."""
    if stored is None:
        return True
    try:
        address = ipaddress.ip_address((addr or "").split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(stored))


def describe_access(token: ScimToken) -> str:
    """The page's words for a token's access: scope and addresses."""
    scope = "Read-only" if token.read_only else "Read and write"
    if token.allowed_networks is None:
        return f"{scope}, from any address"
    return f"{scope}, from " + ", ".join(token.allowed_networks.splitlines())


# --- state ----------------------------------------------------------------------------------


@dataclass
class TokenState:
    name: str  # valid|expiring|expired|no_expiry|revoked|disabled
    label: str
    days_left: int | None


def token_state(connector: ScimConnector, token: ScimToken | None, now: datetime) -> TokenState:
    """A token's badge on the SCIM page: valid, expiring soon (within the warning window),
    expired, valid with no expiry, or revoked."""
    if not connector.enabled or token is None:
        return TokenState("disabled", "Disabled", None)
    if token.revoked_at is not None:
        return TokenState("revoked", "Revoked", None)
    if token.expires_at is None:
        return TokenState("no_expiry", "Valid, no expiry", None)
    left = token.expires_at - now
    days = left.days if left.total_seconds() > 0 else 0
    if left.total_seconds() <= 0:
        return TokenState("expired", "Expired", 0)
    if left <= timedelta(days=current_app.config["SCIM_WARNING_DAYS"]):
        return TokenState(
            "expiring", f"Expiring soon: {days} day{'s' if days != 1 else ''} left", days
        )
    return TokenState("valid", "Valid", days)


def live_tokens(connector: ScimConnector) -> list[ScimToken]:
    """The connector's tokens that an IdP may still present (expired ones included: a
    refresh brings them back), oldest first."""
    return [token for token in connector.tokens if token.revoked_at is None]


def listed_tokens(connector: ScimConnector) -> list[ScimToken]:
    """The tokens the page lists: the live ones, then those revoked since SCIM was last
    enabled (older ones belong to an earlier set-up and stay in the audit log only)."""
    since = connector.enabled_at
    revoked = [
        token
        for token in connector.tokens
        if token.revoked_at is not None and (since is None or token.revoked_at >= since)
    ]
    return live_tokens(connector) + sorted(revoked, key=lambda t: t.revoked_at, reverse=True)


def get_token(connector: ScimConnector, token_id: int) -> ScimToken | None:
    """A live token of `connector` (never another connector's: the id comes from a URL)."""
    for token in live_tokens(connector):
        if token.id == token_id:
            return token
    return None


def warning_token(connector: ScimConnector | None, now: datetime) -> ScimToken | None:
    """The token the banner is about: a live one whose automatic refresh fails with its
    expiry inside the warning window (the soonest to expire), or None."""
    if connector is None or not connector.enabled:
        return None
    window = timedelta(days=current_app.config["SCIM_WARNING_DAYS"])
    failing = [
        token
        for token in live_tokens(connector)
        if token.refresh_failure_reason is not None
        and token.expires_at is not None
        and token.expires_at - now <= window
    ]
    return min(failing, key=lambda t: t.expires_at, default=None)


# --- the owner's actions --------------------------------------------------------------------


def _set_secret(token: ScimToken, now: datetime) -> str:
    secret = new_token()
    token.token_hash = token_hash(secret)
    token.token_encrypted = encrypt(secret)
    token.issued_at = now
    token.refreshed_at = now
    token.expires_at = now + timedelta(days=token.lifetime_days) if token.lifetime_days else None
    token.refresh_failure_reason = None
    token.refresh_failed_at = None
    return secret


def _audit(session, action: str, connector: ScimConnector, token: ScimToken, actor, **detail):
    """A credential event, naming the token (never its secret)."""
    audit.record(
        session,
        action,
        account_id=connector.account_id,
        actor_user_id=actor.id if actor is not None else None,
        target=f"SCIM token {token.name}",
        detail={"token": token.name, "token_id": token.id} | detail,
    )


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


def _issue(
    session,
    connector: ScimConnector,
    name: str,
    lifetime_days: int | None,
    actor,
    now,
    allowed_networks: str | None = None,
    read_only: bool = False,
) -> Issued:
    token = ScimToken(
        connector=connector,
        name=name,
        lifetime_days=lifetime_days,
        allowed_networks=allowed_networks,
        read_only=read_only,
        created_by_user_id=actor.id,
        bound_user_id=actor.id,
        refreshed_by_user_id=actor.id,
        created_at=now,
    )
    secret = _set_secret(token, now)
    session.add(token)
    return Issued(connector, secret, token)


def enable(
    session,
    account_id: int,
    actor: User,
    idp: str,
    lifetime: str,
    now: datetime,
    mode: str = "live",
) -> Issued:
    """Turn SCIM on: the connector URL (kept if it existed) and its first token, named
    "Default"; with `mode="preview"`, as a dry run first (SPEC F12)."""
    if mode not in MODES:
        raise ConnectorError("Choose live or preview.")
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
    connector.idp = idp
    connector.enabled, connector.enabled_at, connector.disabled_at = True, now, None
    _set_mode(session, connector, mode)
    # A new token: the IdP is configured (step 4) once a request carries this one.
    connector.first_request_at = None
    issued = _issue(session, connector, DEFAULT_NAME, LIFETIMES[lifetime], actor, now)
    audit.record(
        session,
        "scim.enabled",
        account_id=account_id,
        actor_user_id=actor.id,
        detail={"idp": idp, "lifetime_days": LIFETIMES[lifetime], "token": DEFAULT_NAME},
    )
    if mode == "preview":
        audit.record(session, "scim.preview_started", account_id=account_id, actor_user_id=actor.id)
    _notify_owners(
        session,
        connector,
        "SCIM provisioning was enabled",
        f'SCIM provisioning was enabled and a connector token ("{DEFAULT_NAME}") issued',
        actor,
        now,
    )
    try:
        session.flush()
    except IntegrityError:  # enabled in another window at the same moment
        session.rollback()  # a failed flush spoils the transaction (nothing else in it yet)
        raise ConnectorError("SCIM was just enabled in another window. Reload the page.") from None
    return issued


MODES = ("live", "preview")
RESTART = {
    "okta": "Okta (Push Groups / Force Sync)",
    "entra": "Microsoft Entra ID (Restart provisioning)",
}


def _set_mode(session, connector: ScimConnector, mode: str) -> None:
    """The connector's mode; the forecast of an earlier preview goes whichever way."""
    connector.mode = mode
    if connector.id is not None:
        session.execute(delete(ScimPreview).where(ScimPreview.connector_id == connector.id))


def start_preview(session, connector: ScimConnector, actor: User, now: datetime) -> None:
    """Switch to preview (SPEC F12): from now on the IdP's writes are validated and
    answered as if applied, and only forecast."""
    if connector.mode == "preview":
        raise ConnectorError("SCIM is in preview already.")
    _set_mode(session, connector, "preview")
    audit.record(
        session, "scim.preview_started", account_id=connector.account_id, actor_user_id=actor.id
    )


def go_live(session, connector: ScimConnector, actor: User, now: datetime) -> None:
    """Go live: the IdP's writes apply from now on. Nothing of the preview is applied
    (its forecast is deleted): the IdP re-sends once its provisioning is restarted."""
    if connector.mode != "preview":
        raise ConnectorError("SCIM is live already.")
    _set_mode(session, connector, "live")
    audit.record(session, "scim.went_live", account_id=connector.account_id, actor_user_id=actor.id)


def restart_hint(idp: str) -> str:
    """How to make the IdP send everything again, as the page says after Go live."""
    return RESTART.get(idp) or (
        "your identity provider (Okta: Push Groups / Force Sync; Entra ID: Restart provisioning)"
    )


def create_token(
    session,
    connector: ScimConnector,
    actor: User,
    name: str,
    lifetime: str,
    now: datetime,
    allowed: str | None = None,
    read_only: bool = False,
) -> Issued:
    """New token: another named token on the same URL; the others keep working (SPEC
    F11). At most SCIM_MAX_TOKENS live ones; names are unique among the live ones.
    `allowed`: its allow-list as typed (`parse_networks`; empty: any address)."""
    if not connector.enabled:
        raise ConnectorError("SCIM is not enabled.")
    name = " ".join((name or "").split())
    if not name:
        raise TokenError("name", "Give the token a name, such as the IdP app it is for.")
    if len(name) > NAME_MAX:
        raise TokenError("name", f"Keep the name to {NAME_MAX} characters.")
    if lifetime not in LIFETIMES:
        raise TokenError("lifetime", "Choose how long the token lasts.")
    networks = parse_networks(allowed)
    live = live_tokens(connector)
    limit = current_app.config["SCIM_MAX_TOKENS"]
    if len(live) >= limit:
        raise TokenError(
            None,
            f"This connector already has {len(live)} live tokens, the most it may have. "
            "Revoke one you no longer use first.",
        )
    if any(token.name.casefold() == name.casefold() for token in live):
        raise TokenError("name", f'A live token is already named "{name}"; choose another name.')
    try:
        with session.begin_nested():  # the same name created in another window meanwhile
            issued = _issue(
                session,
                connector,
                name,
                LIFETIMES[lifetime],
                actor,
                now,
                networks,
                bool(read_only),
            )
            session.flush()
    except IntegrityError:
        raise TokenError(
            "name", f'A live token is already named "{name}"; choose another name.'
        ) from None
    _audit(
        session,
        "scim.token_created",
        connector,
        issued.scim_token,
        actor,
        lifetime_days=LIFETIMES[lifetime],
        allowed_networks=networks.splitlines() if networks else None,
        read_only=bool(read_only),
    )
    _notify_owners(
        session,
        connector,
        "A SCIM token was created",
        f'a new SCIM connector token ("{name}") was created',
        actor,
        now,
    )
    return issued


def reveal(session, connector: ScimConnector, token: ScimToken, actor: User, now: datetime) -> str:
    """A token's secret, for an owner who re-entered the passphrase; always audited."""
    if not connector.enabled or token.revoked_at is not None or not token.token_encrypted:
        raise ConnectorError("SCIM is not enabled.")
    secret = decrypt(token.token_encrypted)
    _audit(session, "scim.token_revealed", connector, token, actor)
    _notify_owners(
        session,
        connector,
        "Your SCIM token was revealed",
        f'the SCIM connector token "{token.name}" was revealed',
        actor,
        now,
    )
    return secret


def refresh(
    session, connector: ScimConnector, token: ScimToken, actor: User, now: datetime
) -> Issued:
    """A manual refresh: a new secret for `token` on the same URL, the old one honoured
    for the grace period; binds the token to `actor` and clears any refresh failure. The
    connector's other tokens are untouched."""
    if not connector.enabled or token.revoked_at is not None:
        raise ConnectorError("SCIM is not enabled.")
    grace = timedelta(hours=current_app.config["SCIM_TOKEN_GRACE_HOURS"])
    # The grace period never outlives the replaced secret: refreshing an expired token
    # must not bring it back to life.
    until = now + grace
    if token.expires_at is not None:
        until = min(until, token.expires_at)
    token.previous_token_hash = token.token_hash if until > now else None
    token.previous_valid_until = until if until > now else None
    token.bound_user_id = token.refreshed_by_user_id = actor.id
    secret = _set_secret(token, now)
    _audit(session, "scim.token_refreshed", connector, token, actor)
    _notify_owners(
        session,
        connector,
        "Your SCIM token was refreshed",
        f'the SCIM connector token "{token.name}" was refreshed (the previous one keeps '
        f"working for {grace.total_seconds() / 3600:g} hours)",
        actor,
        now,
    )
    return Issued(connector, secret, token)


def _revoke(token: ScimToken, actor: User | None, now: datetime) -> None:
    """Refused from now on; the ciphertext goes (nobody reveals a revoked token), the hash
    stays so that the IdP is told the token was revoked rather than unknown."""
    token.revoked_at = now
    token.revoked_by_user_id = actor.id if actor is not None else None
    token.token_encrypted = None
    token.previous_token_hash = token.previous_valid_until = None


def revoke(session, connector: ScimConnector, token: ScimToken, actor: User, now: datetime) -> None:
    """Revoke: `token` is refused at once (its grace secret too); the others keep
    working. The last live token may go too (a leaked token must be stoppable at once):
    the IdP is then refused until an owner creates a new one."""
    if token.revoked_at is not None:
        raise ConnectorError("This token was already revoked.")
    _revoke(token, actor, now)
    _audit(session, "scim.token_revoked", connector, token, actor)
    _notify_owners(
        session,
        connector,
        "A SCIM token was revoked",
        f'the SCIM connector token "{token.name}" was revoked',
        actor,
        now,
    )


def change_access(
    session,
    connector: ScimConnector,
    token: ScimToken,
    actor: User,
    allowed: str | None,
    read_only: bool,
    now: datetime,
) -> bool:
    """Change where and how `token` may be used (its IdP's egress addresses changed, or a
    reporting tool needs no writes); the secret stays. Takes effect on the next request.
    Returns whether anything changed (an unchanged form is no event)."""
    if not connector.enabled or token.revoked_at is not None:
        raise ConnectorError("SCIM is not enabled.")
    networks = parse_networks(allowed)
    before = {
        "allowed_networks": token.allowed_networks.splitlines() if token.allowed_networks else None,
        "read_only": token.read_only,
    }
    after = {
        "allowed_networks": networks.splitlines() if networks else None,
        "read_only": bool(read_only),
    }
    if before == after:
        return False
    token.allowed_networks, token.read_only = networks, bool(read_only)
    _audit(
        session, "scim.token_access_changed", connector, token, actor, before=before, after=after
    )
    _notify_owners(
        session,
        connector,
        "A SCIM token's access was changed",
        f'the access of the SCIM connector token "{token.name}" was changed to: '
        + describe_access(token),
        actor,
        now,
    )
    return True


# --- The deprovisioning policy (SPEC F12) -------------------------------------------------

DEPROVISION_MODES = {"remove": "End access now", "suspend": "Suspend for N days, then remove"}
SUSPEND_DAYS = (1, 365)


def _suspend_days(text: str | None) -> int | None:
    """The number of days typed (None: left empty), or PolicyError on the field."""
    text = (text or "").strip()
    if not text:
        return None
    low, high = SUSPEND_DAYS
    problem = f"Enter a whole number of days from {low} to {high}."
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise PolicyError("days", problem)
    if not low <= int(text) <= high:
        raise PolicyError("days", problem)
    return int(text)


def change_deprovision_policy(
    session,
    connector: ScimConnector,
    actor: User,
    mode: str | None,
    days: str | None,
    now: datetime,
    remote_addr: str | None = None,
) -> bool:
    """What the IdP's `active: false` and DELETE do from now on: "remove" (end access
    now) or "suspend" for `days` (1 to 365), then remove. Removals already scheduled keep
    their date. Returns whether anything changed (an unchanged form is no event).
    A bad value is PolicyError on its field, nothing changed."""
    if mode not in DEPROVISION_MODES:
        raise PolicyError("mode", "Choose what happens when the IdP deactivates or deletes a user.")
    chosen = _suspend_days(days)
    if chosen is None and mode == "suspend":
        raise PolicyError("days", "Enter how many days a suspended member is kept.")
    before = {"mode": connector.deprovision_mode, "days": connector.suspend_days}
    after = {"mode": mode, "days": chosen if chosen is not None else connector.suspend_days}
    if before == after:
        return False
    connector.deprovision_mode, connector.suspend_days = after["mode"], after["days"]
    audit.record(
        session,
        "scim.deprovision_policy_changed",
        account_id=connector.account_id,
        actor_user_id=actor.id,
        target="SCIM deprovisioning policy",
        detail={"before": before, "after": after},
        remote_addr=remote_addr,
    )
    return True


def disable(session, connector: ScimConnector, actor: User, now: datetime) -> None:
    """Turn SCIM off: IdP traffic gets 401 (every token is revoked); members stay, now
    managed by hand."""
    connector.enabled, connector.disabled_at = False, now
    for token in live_tokens(connector):
        _revoke(token, actor, now)
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
_tokens = ScimToken.__table__
_CONNECTOR_COLUMNS = (
    _connectors.c.id,
    _connectors.c.account_id,
    _connectors.c.public_id,
    _connectors.c.enabled,
    _connectors.c.last_used_at,
    _connectors.c.first_request_at,
    _connectors.c.mode,
)
# Built once, Core and not the ORM: every SCIM request runs it, and an ORM load (identity
# map, instance state) cost more than the query itself. The usual request is one
# statement, one unique-index probe: the token whose hash is the presented one
# (uq_scim_token_token_hash), joined to its connector by primary key, which must be the
# one the URL names (so a token of another connector is unknown here). Only when that
# finds nothing (a refreshed token's previous secret in its grace period, or a refusal)
# does `_GRACE` run: the connector by its public id, with the token whose grace hash is
# the presented one if any (ix_scim_token_previous_token_hash), for the request log and
# the "disabled" answer.
_TOKEN_COLUMNS = (
    _tokens.c.id.label("token_id"),
    _tokens.c.name.label("token_name"),
    _tokens.c.token_hash,
    _tokens.c.previous_token_hash,
    _tokens.c.previous_valid_until,
    _tokens.c.expires_at,
    _tokens.c.revoked_at,
    _tokens.c.last_used_at.label("token_last_used_at"),
    _tokens.c.allowed_networks,
    _tokens.c.read_only,
)
_CALLER = Prepared(
    select(*_CONNECTOR_COLUMNS, *_TOKEN_COLUMNS)
    .select_from(_tokens.join(_connectors, _connectors.c.id == _tokens.c.connector_id))
    .where(
        _tokens.c.token_hash == bindparam("hash"),
        _connectors.c.public_id == bindparam("public_id"),
    )
)
_GRACE = Prepared(
    select(*_CONNECTOR_COLUMNS, *_TOKEN_COLUMNS)
    .select_from(
        _connectors.outerjoin(
            _tokens,
            and_(
                _tokens.c.connector_id == _connectors.c.id,
                _tokens.c.previous_token_hash == bindparam("hash"),
            ),
        )
    )
    .where(_connectors.c.public_id == bindparam("public_id"))
)
_CONNECTOR = Prepared(
    select(*_CONNECTOR_COLUMNS).where(_connectors.c.public_id == bindparam("public_id"))
)
USED = (
    update(_connectors)
    .where(_connectors.c.id == bindparam("connector_id"))
    .values(
        last_used_at=bindparam("now"),
        first_request_at=func.coalesce(_connectors.c.first_request_at, bindparam("now")),
    )
)
TOKEN_USED = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"), last_used_addr=bindparam("addr"))
)


@dataclass(frozen=True)
class Caller:
    """The connector a SCIM request is addressed to, and the token it presented: what the
    SCIM API needs of them. `expires_at` and `revoked_at` are the token's; `last_used_at`
    and `first_request_at` the connector's."""

    id: int
    account_id: int
    public_id: str
    expires_at: datetime | None
    last_used_at: datetime | None = None
    first_request_at: datetime | None = None
    token_id: int | None = None
    token_name: str | None = None
    token_last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    allowed_networks: str | None = None  # the token's allow-list (None: any address)
    read_only: bool = False
    mode: str = "live"  # "preview": writes are answered, not applied (SCIM API preview.py)


@dataclass
class Authentication:
    connector: Caller | None  # the accepted (or expired, or revoked) token's caller
    # None when accepted; else unknown|disabled|expired|revoked|address|missing. A
    # read-only token is accepted here: what it may do is the API's to say (auth.py).
    reason: str | None
    known: Caller | None = None  # the connector the URL names, for the log of a refusal


def _caller(row) -> Caller:
    return Caller(
        row.id,
        row.account_id,
        row.public_id,
        row.expires_at,
        row.last_used_at,
        row.first_request_at,
        row.token_id,
        row.token_name,
        row.token_last_used_at,
        row.revoked_at,
        row.allowed_networks,
        bool(row.read_only),
        row.mode,
    )


def _connector_caller(row) -> Caller:
    return Caller(
        row.id, row.account_id, row.public_id, None, row.last_used_at, row.first_request_at
    )


def use_due(caller: Caller, now: datetime) -> bool:
    """Whether the connector's first request, or its or the token's last use, is to be
    stamped now (last use to the minute: what the page shows, without a write per
    request)."""
    minute = timedelta(minutes=1)
    return (
        caller.first_request_at is None
        or caller.last_used_at is None
        or now - caller.last_used_at >= minute
        or (
            caller.token_id is not None
            and (caller.token_last_used_at is None or now - caller.token_last_used_at >= minute)
        )
    )


def record_use(session, caller: Caller, now: datetime, addr: str | None = None) -> None:
    """Stamp the connector's first request and last use, and the token's last use and
    address, in the caller's transaction."""
    if use_due(caller, now):
        execute(session, USED, {"connector_id": caller.id, "now": now})
        if caller.token_id is not None:
            execute(session, TOKEN_USED, {"token_id": caller.token_id, "now": now, "addr": addr})


def find_caller(session, public_id: str) -> Caller | None:
    """The connector `public_id` names, for the request log of a refused request."""
    row = execute(session, _CONNECTOR, {"public_id": public_id}).first()
    return None if row is None else _connector_caller(row)


def presented_hash(authorization: str | None) -> str | None:
    """The hash of the token in `Authorization: Bearer <token>`; None when there is none
    (or one no token could be)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    return token_hash(token)


def authenticate(
    session,
    public_id: str,
    authorization: str | None,
    now: datetime,
    record: bool = True,
    addr: str | None = None,
) -> Authentication:
    """Check `Authorization: Bearer <token>` for connector `public_id` (SPEC F5, F11).

    A token only works for its own connector; hashes are compared in constant time (the
    index finds the row, the compare decides); a refreshed token's previous secret is
    accepted until its grace period ends; a revoked or expired token is refused with its
    own reason, and so is one whose allow-list doesn't hold `addr`. With `record`, an
    accepted token's use is stamped at once; the SCIM API passes False and hands the use
    to the batched request log, so that its check writes nothing.
    """
    presented = presented_hash(authorization)
    if presented is None:
        return Authentication(None, "missing")
    params = {"public_id": public_id, "hash": presented}
    row = execute(session, _CALLER, params).first() or execute(session, _GRACE, params).first()
    result = decide(row, presented, now, addr)
    if record and result.reason is None:
        record_use(session, result.connector, now, addr)
    return result


def decide(row, presented: str, now: datetime, addr: str | None) -> Authentication:
    """The bearer check's verdict on `row` (the connector's and token's columns, as
    `_CALLER` reads them; None when there is no such connector) for the token hashed as
    `presented`, sent from `addr` at `now`."""
    if row is None or row.id is None:
        return Authentication(None, "unknown")
    known = _connector_caller(row)
    if not row.enabled:
        return Authentication(None, "disabled", known)
    current = row.token_hash is not None and hmac.compare_digest(presented, row.token_hash)
    previous = (
        row.previous_token_hash is not None
        and row.previous_valid_until is not None
        and now < row.previous_valid_until
        and hmac.compare_digest(presented, row.previous_token_hash)
    )
    if not (current or previous):
        return Authentication(None, "unknown", known)
    caller = _caller(row)
    if row.revoked_at is not None:
        return Authentication(caller, "revoked", known)
    if row.expires_at is not None and now >= row.expires_at:
        return Authentication(caller, "expired", known)
    if not address_allowed(row.allowed_networks, addr):
        return Authentication(caller, "address", known)
    return Authentication(caller, None, known)


# What `decide` reads of a connector and its token.
CALLER_COLUMNS = (*_CONNECTOR_COLUMNS, *_TOKEN_COLUMNS)


def join_caller(from_clause, account_id_column):
    """`from_clause` (which holds the account table) outer-joined to the connector and
    token a request presented (bound as `connector_id` and `token_id`), for a statement
    that also reads `CALLER_COLUMNS`: the bearer check made again inside a statement the
    request runs anyway (blueprints.scim_api.auth). Both joins are on primary keys; the
    connector must be the account's, the token the connector's."""
    connector_on = and_(
        _connectors.c.id == bindparam("connector_id"),
        _connectors.c.account_id == account_id_column,
    )
    token_on = and_(
        _tokens.c.id == bindparam("token_id"), _tokens.c.connector_id == _connectors.c.id
    )
    return from_clause.outerjoin(_connectors, connector_on).outerjoin(_tokens, token_on)
