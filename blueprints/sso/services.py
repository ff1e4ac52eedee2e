"""SSO connections (SPEC F3): save, test, enable, and sign members in through the IdP.

Plain functions of an explicit session, account and `now`, which flush and never commit
(the caller does). Protocol details live in saml.py and oidc.py; this module decides who
may sign in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from blueprints.auth.services import email_key, find_user
from blueprints.common import audit
from blueprints.common.crypto import encrypt
from blueprints.domains import capture, policy
from blueprints.domains.services import email_domain, has_verified_domain
from models import Account, Domain, Membership, SsoConnection, SsoFlow, User


class SsoError(ValueError):
    """A refusal with a message for people; `field` names a form field when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


LOCKED_WHILE_ENABLED = "Disable SSO before changing its configuration."


def get_connection(session, account_id: int) -> SsoConnection | None:
    return session.scalar(select(SsoConnection).where(SsoConnection.account_id == account_id))


def ensure_connection(session, account_id: int, now: datetime) -> SsoConnection:
    """The account's connection row, created unconfigured on first sight so the page can
    show the SAML URLs (they carry its public id) before the owner saves anything."""
    connection = get_connection(session, account_id)
    if connection is None:
        connection = SsoConnection(
            account_id=account_id, public_id=secrets.token_urlsafe(12), created_at=now
        )
        session.add(connection)
        try:
            session.flush()
        except IntegrityError:  # opened in two tabs at once: the other request made it
            session.rollback()  # a failed flush spoils the transaction (nothing else in it yet)
            connection = get_connection(session, account_id)
    return connection


def connection_by_public_id(session, public_id: str) -> SsoConnection | None:
    return session.scalar(select(SsoConnection).where(SsoConnection.public_id == public_id))


def _editable(session, account_id: int, protocol: str, now: datetime) -> SsoConnection:
    connection = ensure_connection(session, account_id, now)
    if connection.enabled:
        raise SsoError(LOCKED_WHILE_ENABLED)
    if connection.protocol != protocol:
        # A new protocol starts from a clean slate: no stale fields of the other one.
        for column in SsoConnection.__table__.columns:
            if column.name.startswith(("saml_", "oidc_")):
                setattr(connection, column.name, None)
    connection.protocol = protocol
    connection.updated_at = now
    # Any change needs a new successful test before SSO can be enabled.
    connection.test_ok, connection.tested_at, connection.test_message = False, None, None
    return connection


def save_saml(
    session, account_id: int, settings, metadata_xml: str | None, actor_id: int, now: datetime
) -> SsoConnection:
    """Store checked SAML IdP settings (saml.IdpSettings)."""
    connection = _editable(session, account_id, "saml", now)
    connection.saml_idp_entity_id = settings.entity_id
    connection.saml_idp_sso_url = settings.sso_url
    connection.saml_idp_certificate = settings.certificate_pem
    connection.saml_idp_metadata_xml = metadata_xml
    audit.record(
        session,
        "sso.saml_saved",
        account_id=account_id,
        actor_user_id=actor_id,
        target=settings.entity_id,
    )
    return connection


def save_oidc(
    session,
    account_id: int,
    issuer: str,
    discovery: dict,
    client_id: str,
    client_secret: str | None,
    actor_id: int,
    now: datetime,
) -> SsoConnection:
    """Store a checked OIDC client; an empty secret keeps the stored one."""
    existing = get_connection(session, account_id)
    keeps_secret = (
        existing is not None
        and existing.protocol == "oidc"
        and existing.oidc_client_secret_encrypted
    )
    if not client_secret and not keeps_secret:
        raise SsoError("Enter the client secret.", field="client_secret")
    old_secret = existing.oidc_client_secret_encrypted if keeps_secret else None
    connection = _editable(session, account_id, "oidc", now)
    connection.oidc_issuer = issuer
    connection.oidc_discovery = discovery
    connection.oidc_client_id = client_id
    connection.oidc_client_secret_encrypted = (
        encrypt(client_secret) if client_secret else old_secret
    )
    audit.record(
        session, "sso.oidc_saved", account_id=account_id, actor_user_id=actor_id, target=issuer
    )
    return connection


def enable(session, connection: SsoConnection, actor_id: int, now: datetime) -> None:
    """Turn SSO on: needs a verified domain and a successful test since the last change."""
    if not has_verified_domain(session, connection.account_id):
        raise SsoError("Verify a domain first: SSO applies to members of verified domains.")
    if not connection.test_ok:
        raise SsoError("Run a successful test sign-in first.")
    connection.enabled, connection.enabled_at = True, now
    audit.record(session, "sso.enabled", account_id=connection.account_id, actor_user_id=actor_id)


def disable(session, connection: SsoConnection, actor_id: int) -> None:
    connection.enabled = False
    audit.record(session, "sso.disabled", account_id=connection.account_id, actor_user_id=actor_id)


# --- flows ------------------------------------------------------------------------------


def start_flow(
    session,
    connection: SsoConnection,
    purpose: str,
    now: datetime,
    *,
    user_id: int | None = None,
    next_url: str | None = None,
) -> SsoFlow:
    """A new sign-in through the IdP; its id is the OIDC state or SAML RelayState."""
    if next_url and len(next_url) > SsoFlow.next_url.type.length:
        next_url = None  # too long to keep: the member lands on the dashboard instead
    flow = SsoFlow(
        id=secrets.token_urlsafe(32),
        connection_id=connection.id,
        purpose=purpose,
        user_id=user_id,
        next_url=next_url,
        oidc_nonce=secrets.token_urlsafe(32) if connection.protocol == "oidc" else None,
        oidc_code_verifier=secrets.token_urlsafe(64) if connection.protocol == "oidc" else None,
        expires_at=now + timedelta(seconds=current_app.config["SSO_FLOW_SECONDS"]),
        created_at=now,
    )
    session.add(flow)
    return flow


def pending_flow(session, flow_id: str | None, now: datetime) -> SsoFlow | None:
    """The flow `flow_id` if it is neither used nor expired (without spending it)."""
    if not flow_id or len(flow_id) > 64:
        return None
    flow = session.get(SsoFlow, flow_id)
    if flow is None or flow.used_at is not None or flow.expires_at <= now:
        return None
    return flow


def take_flow(session, flow_id: str | None, now: datetime) -> SsoFlow | None:
    """The unexpired flow `flow_id`, spent now so that it can't be used twice (once the
    caller commits: a concurrent spend of the same flow waits for that, then finds it
    spent)."""
    if not flow_id or len(flow_id) > 64:
        return None
    table = SsoFlow.__table__
    spent = session.execute(
        update(table)
        .where(table.c.id == flow_id, table.c.used_at.is_(None), table.c.expires_at > now)
        .values(used_at=now)
    )
    if spent.rowcount != 1:
        return None
    return session.get(SsoFlow, flow_id, populate_existing=True)


def purge_flows(session, now: datetime) -> int:
    """Forget sign-ins that can no longer finish (expired, used or not); returns how many.

    Starting one needs no account (anyone can type an SSO email at /login), so expired
    rows must not pile up: a scheduled job calls this with the current time.
    """
    result = session.execute(delete(SsoFlow).where(SsoFlow.expires_at <= now))
    return result.rowcount


def park_result(session, flow: SsoFlow, email: str | None, error: str | None) -> None:
    """Keep a checked SAML outcome on its (spent) flow until the browser collects it."""
    flow.result_email, flow.result_error = email, (error or None) and error[:500]


def collect_result(session, flow_id: str | None, now: datetime) -> SsoFlow | None:
    """The parked outcome of flow `flow_id`, once: a guarded UPDATE marks it collected."""
    if not flow_id or len(flow_id) > 64:
        return None
    table = SsoFlow.__table__
    collected = session.execute(
        update(table)
        .where(
            table.c.id == flow_id,
            table.c.used_at.is_not(None),
            table.c.finished_at.is_(None),
            table.c.expires_at > now,
            (table.c.result_email.is_not(None)) | (table.c.result_error.is_not(None)),
        )
        .values(finished_at=now)
    )
    if collected.rowcount != 1:
        return None
    return session.get(SsoFlow, flow_id, populate_existing=True)


def record_test(
    session, connection: SsoConnection, flow: SsoFlow, ok: bool, message: str, now: datetime
) -> None:
    connection.test_ok, connection.test_message = ok, message[:500]
    connection.tested_at, connection.tested_by_user_id = now, flow.user_id
    audit.record(
        session,
        "sso.test_succeeded" if ok else "sso.test_failed",
        account_id=connection.account_id,
        actor_user_id=flow.user_id,
        detail={"message": message[:200]},
    )


# --- who signs in ---------------------------------------------------------------------------


def connection_for_email(session, email: str) -> SsoConnection | None:
    """The enabled connection of the account that verified the email's domain, if any."""
    domain = email_domain(email)
    if not domain:
        return None
    return session.scalar(
        select(SsoConnection)
        .join(Domain, Domain.account_id == SsoConnection.account_id)
        .where(Domain.name == domain, Domain.status == "verified", SsoConnection.enabled)
    )


def _membership(session, account_id: int, user: User) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.account_id == account_id, Membership.user_id == user.id)
    )


def is_break_glass(session, connection: SsoConnection, email: str) -> bool:
    """Owners and co-owners keep passphrase sign-in while SSO is on (SPEC F3)."""
    user = find_user(session, email)
    membership = user and _membership(session, connection.account_id, user)
    return bool(membership and membership.is_admin)


@dataclass
class SignInOutcome:
    user: User | None
    message: str | None = None


def user_for_identity(
    session,
    connection: SsoConnection,
    email: str,
    now: datetime,
    remote_addr: str | None = None,
) -> SignInOutcome:
    """Match the IdP's email to an active member of the connection's account.

    The email must be in one of the account's verified domains, so an IdP can only speak
    for addresses the account has proven it owns. Someone who is not a member is made
    one just in time when domain capture is on for their domain and the account is not
    "SCIM only" (SPEC F13, policy.may_join_by_sso): the person (if new, without a
    passphrase) and a member membership holding a seat; with no seat left, the capture's
    refusal (the owners are told once a day). Otherwise nobody is created here.
    """
    verified = session.scalar(
        select(
            exists().where(
                Domain.account_id == connection.account_id,
                Domain.status == "verified",
                Domain.name == email_domain(email),
            )
        )
    )
    if not verified:
        return SignInOutcome(None, f"{email} is not in a verified domain of this account.")
    user = find_user(session, email)
    membership = user and _membership(session, connection.account_id, user)
    if not membership:
        return _just_in_time(session, connection, user, email, now, remote_addr)
    if not membership.active:
        return SignInOutcome(
            None, f"The account of {email} is deactivated. Ask your administrator."
        )
    return SignInOutcome(user)


def _just_in_time(
    session, connection: SsoConnection, user: User | None, email: str, now, remote_addr
) -> SignInOutcome:
    account = session.get(Account, connection.account_id)
    decision = policy.may_join_by_sso(session, account, email)
    if not decision:
        return SignInOutcome(None, decision.reason)
    if user is None:
        user = User(email=email, email_key=email_key(email), session_generation=1, created_at=now)
        session.add(user)
        session.flush()
    member = capture.join(session, account, user, "sso", now, remote_addr)
    if member is None:
        return SignInOutcome(None, capture.no_seat(account.name))
    if not member.active:  # made deactivated meanwhile: as for any deactivated member
        return SignInOutcome(
            None, f"The account of {email} is deactivated. Ask your administrator."
        )
    return SignInOutcome(user)
