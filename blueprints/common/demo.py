"""`flask --app app seed-demo`: idempotent demo data for a newcomer (SPEC "Stable names").

A CLI command owns its transaction like a job: `seed_demo` commits once, at its end."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from blueprints.auth.services import email_key, set_passphrase
from blueprints.common.extensions import db
from models import Account, Membership, User

DEMO_ACCOUNT = "Acme (demo)"
DEMO_OWNER = "owner@acme.test"
DEMO_MEMBER = "member@acme.test"
DEMO_DOMAIN = "acme.test"


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email_key == email_key(email)))
    if user is None:
        user = User(email=email, email_key=email_key(email), session_generation=1)
        db.session.add(user)
        db.session.flush()
    return user


def _membership(account: Account, user: User, role: str) -> None:
    found = db.session.scalar(
        select(Membership).where(Membership.account_id == account.id, Membership.user_id == user.id)
    )
    if found is None:
        db.session.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                email=user.email,
                display_name=user.display_name,
                role=role,
                source="manual",
                active=True,
                licensed=True,
            )
        )
        account.seats_used += 1


def _with_scim(account: Account, owner: User) -> dict[str, str]:
    """A verified acme.test, SSO on, SCIM on with a fresh token, and no seat cap to speak
    of, so a benchmark can provision as many users as it likes."""
    from blueprints.common.crypto import encrypt
    from blueprints.scim_settings import connector as scim
    from models import Domain, SsoConnection, utcnow

    now = utcnow()
    account.seat_limit = 1_000_000
    domain = db.session.scalar(
        select(Domain).where(Domain.account_id == account.id, Domain.name == DEMO_DOMAIN)
    )
    if domain is None:
        domain = Domain(account_id=account.id, name=DEMO_DOMAIN, token=secrets.token_urlsafe(24))
        db.session.add(domain)
    domain.status, domain.verified_at, domain.failure_reason = "verified", now, None
    sso = db.session.scalar(select(SsoConnection).where(SsoConnection.account_id == account.id))
    if sso is None:
        # A stand-in IdP: the demo owner keeps passphrase sign-in (break-glass).
        issuer = f"https://idp.{DEMO_DOMAIN}"
        sso = SsoConnection(
            account_id=account.id,
            public_id=secrets.token_urlsafe(12),
            protocol="oidc",
            oidc_issuer=issuer,
            oidc_client_id="demo",
            oidc_client_secret_encrypted=encrypt(secrets.token_urlsafe(16)),
            oidc_discovery={
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
            },
        )
        db.session.add(sso)
    sso.test_ok, sso.enabled, sso.enabled_at = True, True, now
    found = scim.get_connector(db.session, account.id)
    if found is not None and found.enabled:
        # A fresh secret for its first live token ("Default"), or a new "Default" when an
        # owner revoked them all.
        live = scim.live_tokens(found)
        if live:
            issued = scim.refresh(db.session, found, live[0], owner, now)
        else:
            issued = scim.create_token(db.session, found, owner, scim.DEFAULT_NAME, "365", now)
    else:
        issued = scim.enable(db.session, account.id, owner, "other", "365", now)
    return {"SCIM_BASE_URL": scim.base_url(issued.connector), "SCIM_TOKEN": issued.token}


def seed_demo(with_scim: bool = False) -> dict[str, str]:
    """Create the demo account once; each run gives the owner a fresh passphrase to print
    (and, with SCIM, a fresh connector token)."""
    account = db.session.scalar(select(Account).where(Account.name == DEMO_ACCOUNT))
    if account is None:
        account = Account(name=DEMO_ACCOUNT, seat_limit=50)
        db.session.add(account)
        db.session.flush()
    owner = _user(DEMO_OWNER)
    member = _user(DEMO_MEMBER)
    _membership(account, owner, "owner")
    _membership(account, member, "member")
    passphrase = "-".join(secrets.token_urlsafe(4) for _ in range(4))
    set_passphrase(db.session, owner, passphrase)
    if member.passphrase_hash is None:
        set_passphrase(db.session, member, secrets.token_urlsafe(24))
    printed = {"OWNER_EMAIL": DEMO_OWNER, "OWNER_PASSPHRASE": passphrase}
    if with_scim:
        printed |= _with_scim(account, owner)
    db.session.commit()
    return printed
